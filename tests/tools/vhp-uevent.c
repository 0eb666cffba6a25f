/* vhp-uevent: emits a udev event inside a umockdev testbed, to the libudev monitors of the
 * processes running there (umockdev's preload gives each monitor a socket $UMOCKDEV_DIR/eventN and
 * expects libudev's own message format on it: a "libudev" header, then KEY=VALUE\0 properties).
 *
 *   vhp-uevent ACTION DEVPATH [PROPFILE]
 *
 * The properties are those of /sys/DEVPATH/uevent, or of PROPFILE (KEY=VALUE lines, as
 * tests/lib.sh keeps them for an unplugged device); ACTION, DEVPATH and a SEQNUM are added.
 * Prints how many monitors it reached. Exit 0, 1 on error, 2 usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MONITOR_MAGIC 0xfeedcafe

struct header {
        char prefix[8];
        uint32_t magic, header_size, properties_off, properties_len;
        uint32_t filter_subsystem_hash, filter_devtype_hash, filter_tag_bloom_hi, filter_tag_bloom_lo;
};

/* MurmurHash2 (32 bits, seed 0): what libudev's in-kernel socket filter compares. */
static uint32_t murmur2(const char *s) {
        const uint32_t m = 0x5bd1e995;
        size_t len = strlen(s);
        uint32_t h = (uint32_t)len;
        const unsigned char *p = (const unsigned char *)s;

        for (; len >= 4; p += 4, len -= 4) {
                uint32_t k;
                memcpy(&k, p, 4);
                k *= m;
                k ^= k >> 24;
                k *= m;
                h = h * m ^ k;
        }
        switch (len) {
        case 3:
                h ^= (uint32_t)p[2] << 16; /* fall through */
        case 2:
                h ^= (uint32_t)p[1] << 8; /* fall through */
        case 1:
                h ^= p[0];
                h *= m;
        }
        h ^= h >> 13;
        h *= m;
        h ^= h >> 15;
        return h;
}

static char buf[65536];
static size_t len;

static void add(const char *kv) {
        size_t n = strlen(kv);
        if (n == 0 || len + n + 1 > sizeof(buf))
                return;
        memcpy(buf + len, kv, n + 1);
        len += n + 1;
}

int main(int argc, char **argv) {
        const char *dir = getenv("UMOCKDEV_DIR"), *subsystem = NULL, *devtype = NULL;
        char path[4096], line[4096], kv[4200], pattern[4096];
        struct header h = {.prefix = "libudev"};
        glob_t g;
        FILE *f;
        int sent = 0;

        if (argc < 3 || argc > 4 || !dir) {
                fprintf(stderr, "usage (inside umockdev-run): vhp-uevent ACTION DEVPATH [PROPFILE]\n");
                return 2;
        }
        snprintf(kv, sizeof(kv), "ACTION=%s", argv[1]);
        add(kv);
        snprintf(kv, sizeof(kv), "DEVPATH=%s", argv[2]);
        add(kv);
        snprintf(kv, sizeof(kv), "SEQNUM=%ld", (long)time(NULL));
        add(kv);
        snprintf(path, sizeof(path), "/sys%s/uevent", argv[2]);
        f = fopen(argc == 4 ? argv[3] : path, "re");
        if (!f) {
                fprintf(stderr, "vhp-uevent: %s: %s\n", argc == 4 ? argv[3] : path, strerror(errno));
                return 1;
        }
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                if (strncmp(line, "ACTION=", 7) == 0 || strncmp(line, "DEVPATH=", 8) == 0 ||
                    strncmp(line, "SEQNUM=", 7) == 0)
                        continue;
                add(line);
        }
        fclose(f);
        for (size_t off = 0; off < len; off += strlen(buf + off) + 1) {
                if (strncmp(buf + off, "SUBSYSTEM=", 10) == 0)
                        subsystem = buf + off + 10;
                else if (strncmp(buf + off, "DEVTYPE=", 8) == 0)
                        devtype = buf + off + 8;
        }
        if (!subsystem) {
                fprintf(stderr, "vhp-uevent: no SUBSYSTEM in the properties\n");
                return 1;
        }
        h.magic = htonl(MONITOR_MAGIC);
        h.header_size = sizeof(h);
        h.properties_off = sizeof(h);
        h.properties_len = (uint32_t)len;
        h.filter_subsystem_hash = htonl(murmur2(subsystem));
        if (devtype)
                h.filter_devtype_hash = htonl(murmur2(devtype));

        snprintf(pattern, sizeof(pattern), "%s/event[0-9]*", dir);
        if (glob(pattern, GLOB_NOSORT, NULL, &g) == 0) {
                for (size_t i = 0; i < g.gl_pathc; i++) {
                        struct sockaddr_un a = {.sun_family = AF_UNIX};
                        struct iovec iov[2] = {{&h, sizeof(h)}, {buf, len}};
                        struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
                        int fd = socket(AF_UNIX, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

                        snprintf(a.sun_path, sizeof(a.sun_path), "%s", g.gl_pathv[i]);
                        if (fd < 0)
                                continue;
                        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && sendmsg(fd, &m, 0) >= 0)
                                sent++;
                        else if (errno == ECONNREFUSED)
                                unlink(a.sun_path); /* that monitor is gone */
                        close(fd);
                }
                globfree(&g);
        }
        printf("%d\n", sent);
        return 0;
}
