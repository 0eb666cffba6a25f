/* vhotplug-event: the program the udev rule runs (RUN+=) for every device event vhotplug may care
 * about. It sends its whole environment, which udev fills with the device's properties, as ONE
 * message to vhotplug-helper's socket (systemd starts the helper service on the first message) and
 * exits without waiting for an answer: udevd kills RUN programs when the event ends, and a QEMU
 * usb-host attach only succeeds after udev has finished the event, so the work must happen
 * elsewhere, later.
 *
 * Nothing in the environment is interpreted here: it is copied byte for byte (KEY=VALUE entries,
 * each ended by a NUL), at most MSG_MAX bytes; entries that do not fit are dropped with a note. No
 * shell, no library beyond libc. When the socket is absent or nobody listens (early boot, not
 * installed, shutting down) it says so once on stderr and exits 0: vhotplug-reconcile repairs what
 * was missed. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/vhotplug/helper.sock"
#define MSG_MAX 65536     /* the service reads no more (SVC_MSG_MAX in lib/service.h) */
#define SEND_TIMEOUT_S 10 /* a service too busy to take connections: give up, do not hold udev */

extern char **environ;

static char msg[MSG_MAX];

int main(int argc, char **argv) {
        static const struct option longopts[] = {
                {"socket", required_argument, NULL, 's'},
                {"help", no_argument, NULL, 'h'},
                {},
        };
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        const char *path = DEFAULT_SOCKET;
        size_t len = 0, dropped = 0;
        int c, fd;

        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
                if (c == 's') {
                        path = optarg;
                } else if (c == 'h') {
                        printf("Usage: vhotplug-event [--socket PATH]\n"
                               "Sends this udev event (the environment) to vhotplug-helper's socket, "
                               "default " DEFAULT_SOCKET ".\n");
                        return 0;
                } else {
                        return 2;
                }
        }
        if (optind != argc || strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "vhotplug-event: usage: vhotplug-event [--socket PATH]\n");
                return 2;
        }
        memcpy(sa.sun_path, path, strlen(path));

        for (char **e = environ; *e; e++) {
                size_t n = strlen(*e) + 1;
                if (n > sizeof(msg) - len) {
                        dropped++;
                        continue;
                }
                memcpy(msg + len, *e, n);
                len += n;
        }
        if (dropped)
                fprintf(stderr, "vhotplug-event: %zu properties dropped: the event exceeds %d bytes\n",
                        dropped, MSG_MAX);

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                fprintf(stderr, "vhotplug-event: socket: %s\n", strerror(errno));
                return 1;
        }
        /* connect() waits while the service's backlog is full; bounded by the send timeout. */
        struct timeval tv = {.tv_sec = SEND_TIMEOUT_S};
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = errno;
                fprintf(stderr, "vhotplug-event: %s: %s; event not passed on (vhotplug-reconcile repairs)\n",
                        path, strerror(e));
                return e == ENOENT || e == ECONNREFUSED || e == ENOTDIR ? 0 : 1;
        }
        if (send(fd, msg, len, MSG_NOSIGNAL) != (ssize_t)len) {
                fprintf(stderr, "vhotplug-event: %s: send: %s\n", path, strerror(errno));
                return 1;
        }
        return 0;
}
