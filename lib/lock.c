#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define TICK_MS 50 /* how often the timer interrupts a wait to look at the deadline */

static void on_alarm(int sig) {
        (void)sig; /* only here to interrupt flock() */
}

static void install_alarm_handler(void) {
        struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART: flock() returns EINTR */

        sigemptyset(&sa.sa_mask);
        (void)sigaction(SIGALRM, &sa, NULL);
}

int lock_wait(int fd, int op, int timeout_ms) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        struct sigevent sev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGALRM};
        struct itimerspec tick = {.it_value = {.tv_nsec = TICK_MS * 1000000L},
                                  .it_interval = {.tv_nsec = TICK_MS * 1000000L}};
        int64_t deadline = now_ms() + timeout_ms;
        sigset_t alrm, saved;
        timer_t timer;
        int r;

        if (flock(fd, op | LOCK_NB) == 0)
                return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
                return -errno;
        if (timeout_ms <= 0)
                return -ETIMEDOUT;

        /* Block in flock(): the kernel wakes us when the holder lets go. A periodic per-thread timer
         * interrupts the wait so that the deadline is kept (also if it fired just before flock()
         * was entered: the next tick comes). */
        pthread_once(&once, install_alarm_handler);
        sev._sigev_un._tid = gettid(); /* sigev_notify_thread_id, which glibc 2.36 does not name */
        if (timer_create(CLOCK_MONOTONIC, &sev, &timer) < 0)
                return -errno;
        sigemptyset(&alrm);
        sigaddset(&alrm, SIGALRM);
        pthread_sigmask(SIG_UNBLOCK, &alrm, &saved);
        timer_settime(timer, 0, &tick, NULL);
        for (;;) {
                if (flock(fd, op) == 0) {
                        r = 0;
                        break;
                }
                if (errno != EINTR) {
                        r = -errno;
                        break;
                }
                if (now_ms() >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
        }
        timer_delete(timer);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        return r;
}

int lock_take(const char *dir, const char *name, int timeout_ms) {
        char path[4096], safe[96];
        size_t i;
        int fd, r;

        /* VM names come from the config: keep the file name plain. */
        for (i = 0; name[i] && i < sizeof(safe) - 1; i++) {
                char c = name[i];
                safe[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                                          c == '-' || c == '_' || c == '.'
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
        r = lock_wait(fd, LOCK_EX, timeout_ms);
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
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
