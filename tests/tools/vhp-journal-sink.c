/* vhp-journal-sink SOCKET OUT -- COMMAND [ARGS...]: a stand-in for journald's native socket, for
 * tests of journal logging. Binds a unix datagram socket at SOCKET (libsystemd's sd_journal_send()
 * writes to /run/systemd/journal/socket: run it in a mount namespace with a tmpfs there), runs
 * COMMAND, receives every record COMMAND (and its children) send while it runs, and, once it has
 * exited, the ones still queued. Each record is written to OUT as its fields, one "NAME=value" a
 * line, followed by an empty line. Values are written escaped (a newline as \x0a, a backslash as
 * \\); one that held a control character as sent is marked "NAME~=value". Both forms of the native
 * protocol are decoded (NAME=value lines, and NAME\n<le64 size><bytes>\n for values holding a
 * newline), as are records passed as a memfd (what libsystemd does for a record too large for a
 * datagram). Exits with COMMAND's status (128+signal when killed); 125 when the sink itself fails. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

#define REC_MAX (4 << 20)

static void put_field(FILE *out, const char *name, size_t nlen, const char *val, size_t vlen) {
        char *v = strndup(val, vlen), *safe;
        size_t sl = vlen * 4 + 1;

        safe = malloc(sl);
        if (!v || !safe) {
                free(v);
                free(safe);
                return;
        }
        bool ctl = false;
        for (size_t i = 0; i < vlen; i++)
                ctl |= (unsigned char)val[i] < 0x20 || val[i] == 0x7f;
        str_escape(v, safe, sl);
        /* "NAME~=" marks a value that held control characters as sent (escaped here). */
        fprintf(out, "%.*s%s=%s\n", (int)nlen, name, ctl ? "~" : "", safe);
        free(v);
        free(safe);
}

/* Decodes one record of the native protocol. Returns 0, or -EBADMSG for a malformed one. */
static int decode(FILE *out, const char *p, size_t n) {
        const char *end = p + n;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                if (!nl)
                        nl = end; /* the last line may lack its newline */
                const char *eq = memchr(p, '=', (size_t)(nl - p));
                if (eq) {
                        put_field(out, p, (size_t)(eq - p), eq + 1, (size_t)(nl - eq - 1));
                        p = nl + 1;
                        continue;
                }
                /* NAME\n, 64-bit little-endian size, the bytes, \n */
                uint64_t len = 0;
                const unsigned char *s = (const unsigned char *)nl + 1;
                if (nl == end || end - (const char *)s < 8)
                        return -EBADMSG;
                for (int i = 7; i >= 0; i--)
                        len = len << 8 | s[i];
                const char *val = (const char *)s + 8;
                if (len > (uint64_t)(end - val) || (uint64_t)(end - val) - len < 1 || val[len] != '\n')
                        return -EBADMSG;
                put_field(out, p, (size_t)(nl - p), val, (size_t)len);
                p = val + len + 1;
        }
        fputc('\n', out);
        fflush(out);
        return 0;
}

/* Receives one datagram (or memfd) if one is there; returns 1 when one was handled, 0 when none
 * was waiting, -errno on failure. */
static int receive(int fd, FILE *out, char *buf) {
        union {
                struct cmsghdr h;
                char b[CMSG_SPACE(sizeof(int))];
        } ctl;
        struct iovec iov = {.iov_base = buf, .iov_len = REC_MAX};
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof(ctl)};
        ssize_t k = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

        if (k < 0)
                return errno == EAGAIN ? 0 : -errno;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                int mfd;
                struct stat st;
                memcpy(&mfd, CMSG_DATA(c), sizeof(int));
                k = fstat(mfd, &st) == 0 && st.st_size <= REC_MAX ? pread(mfd, buf, (size_t)st.st_size, 0)
                                                                  : -1;
                close(mfd);
                if (k < 0)
                        return -EIO;
        }
        if (decode(out, buf, (size_t)k) < 0)
                fprintf(out, "VHP_SINK_ERROR=malformed record\n\n");
        return 1;
}

int main(int argc, char **argv) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd, pidfd, status, r;
        char *buf;
        FILE *out;
        pid_t pid;

        if (argc < 5 || strcmp(argv[3], "--") != 0 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "usage: %s SOCKET OUT -- COMMAND [ARGS...]\n", argv[0]);
                return 125;
        }
        strcpy(sa.sun_path, argv[1]);
        buf = malloc(REC_MAX);
        out = fopen(argv[2], "we");
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (!buf || !out || fd < 0) {
                perror("vhp-journal-sink");
                return 125;
        }
        unlink(sa.sun_path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                fprintf(stderr, "vhp-journal-sink: bind %s: %s\n", sa.sun_path, strerror(errno));
                return 125;
        }
        pid = fork();
        if (pid < 0)
                return 125;
        if (pid == 0) {
                execvp(argv[4], argv + 4);
                fprintf(stderr, "vhp-journal-sink: %s: %s\n", argv[4], strerror(errno));
                _exit(127);
        }
        pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0) {
                perror("vhp-journal-sink: pidfd_open");
                return 125;
        }
        /* Read while the command runs: a full socket queue would block its sender. */
        for (;;) {
                struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = pidfd, .events = POLLIN}};
                if (poll(p, 2, -1) < 0 && errno != EINTR)
                        return 125;
                if (p[0].revents & POLLIN && receive(fd, out, buf) < 0)
                        return 125;
                if (p[1].revents & POLLIN)
                        break;
        }
        while ((r = receive(fd, out, buf)) > 0)
                ;
        if (r < 0 || waitpid(pid, &status, 0) < 0)
                return 125;
        fclose(out);
        free(buf);
        close(fd);
        unlink(sa.sun_path);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
