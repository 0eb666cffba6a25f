#include "lock.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int lock_take(const char *dir, const char *name, int timeout_ms) {
        char path[4096], safe[96];
        size_t i;
        int fd, delay_us = 500;
        int64_t deadline = now_ms() + timeout_ms;

        /* VM names come from the config: keep the file name plain. */
        for (i = 0; name[i] && i < sizeof(safe) - 1; i++) {
                char c = name[i];
                safe[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                                          c == '_' || c == '.'
                                  ? c
                                  : '_';
        }
        safe[i] = 0;
        if (snprintf(path, sizeof(path), "%s/%s.lock", dir, safe) >= (int)sizeof(path))
                return -ENAMETOOLONG;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        for (;;) {
                if (flock(fd, LOCK_EX | LOCK_NB) == 0)
                        return fd;
                if (errno != EWOULDBLOCK && errno != EINTR) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
                if (now_ms() >= deadline) {
                        close(fd);
                        return -ETIMEDOUT;
                }
                usleep((useconds_t)delay_us);
                if (delay_us < 20000)
                        delay_us *= 2;
        }
}

int lock_take_device(const char *dir, const char *devpath, int timeout_ms) {
        /* FNV-1a: devpaths are long; 64 bits make collisions (which only serialize) negligible. */
        uint64_t h = 1469598103934665603ull;
        char name[32];
        for (const char *p = devpath; *p; p++)
                h = (h ^ (unsigned char)*p) * 1099511628211ull;
        snprintf(name, sizeof(name), "dev-%016llx", (unsigned long long)h);
        return lock_take(dir, name, timeout_ms);
}

int lock_take_vm(const char *dir, const char *vm, int timeout_ms) {
        char name[96];
        snprintf(name, sizeof(name), "vm-%s", vm);
        return lock_take(dir, name, timeout_ms);
}

void lock_release(int fd) {
        if (fd >= 0)
                close(fd);
}
