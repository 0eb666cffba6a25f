/* The helper's service mode (lib/service.c): message parsing, the listening socket, and the loop
 * itself run in a child process with a real SOCK_SEQPACKET socket: one device's events one after
 * another in arrival order, devices in parallel up to the bound, nothing lost when it is stopped
 * mid-burst (the rest waits in the socket for the next start), malformed messages dropped, the
 * configuration read again when the file changed. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "service.h"

/* ---- parsing ---- */

struct parse_case {
        const char *name;
        const char *msg;
        size_t len;
        int r;
        size_t n_env;
        const char *devpath;
};

#define M(s) s, sizeof(s) - 1 /* keeps the embedded NULs, not the final one */

static void test_parse_table(void **state) {
        static const struct parse_case cases[] = {
                {"udev event", M("ACTION=add\0DEVPATH=/devices/a\0SEQNUM=7\0"), 0, 3, "/devices/a"},
                {"last entry without NUL", M("ACTION=add\0DEVPATH=/devices/a"), 0, 2, "/devices/a"},
                {"empty entries skipped", M("\0\0DEVPATH=/devices/a\0\0X=1\0"), 0, 2, "/devices/a"},
                {"entries without = or key left out", M("junk\0=v\0DEVPATH=/d\0"), 0, 1, "/d"},
                {"first DEVPATH counts", M("DEVPATH=/first\0DEVPATH=/second\0"), 0, 2, "/first"},
                {"value may hold = and raw bytes", M("NAME=a=b\xff\x01\0DEVPATH=/d\0"), 0, 2, "/d"},
                {"no DEVPATH", M("ACTION=add\0SEQNUM=1\0"), -EBADMSG, 0, NULL},
                {"empty DEVPATH", M("DEVPATH=\0ACTION=add\0"), -EBADMSG, 0, NULL},
                {"DEVPATHX is not DEVPATH", M("DEVPATHX=/d\0"), -EBADMSG, 0, NULL},
                {"empty message", "", 0, -ENODATA, 0, NULL},
                {"only NULs", M("\0\0\0"), -EBADMSG, 0, NULL},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct parse_case *c = &cases[i];
                struct svc_event *ev = NULL;
                int r = svc_event_parse(c->msg, c->len, &ev);
                if (r != c->r)
                        fail_msg("%s: r=%d, expected %d", c->name, r, c->r);
                if (r < 0) {
                        assert_null(ev);
                        continue;
                }
                if (ev->n_env != c->n_env)
                        fail_msg("%s: %zu entries, expected %zu", c->name, ev->n_env, c->n_env);
                assert_string_equal(ev->devpath, c->devpath);
                assert_null(ev->envp[ev->n_env]);
                svc_event_free(ev);
        }
}

static void test_parse_bounds(void **state) {
        struct svc_event *ev = NULL;
        size_t len = SVC_MSG_MAX + 1;
        char *big = calloc(1, len);
        assert_non_null(big);

        memcpy(big, "DEVPATH=/d", 10);
        assert_int_equal(svc_event_parse(big, len, &ev), -EMSGSIZE);
        /* exactly the limit is fine */
        assert_int_equal(svc_event_parse(big, SVC_MSG_MAX, &ev), 0);
        svc_event_free(ev);

        /* SVC_ENV_MAX entries pass, one more does not */
        size_t off = 0;
        for (int i = 0; i < SVC_ENV_MAX; i++)
                off += sprintf(big + off, "%s%d=x", i == 0 ? "DEVPATH=/d\0K" : "K", i) + 1;
        assert_int_equal(svc_event_parse(big, off, &ev), 0);
        assert_int_equal(ev->n_env, SVC_ENV_MAX);
        svc_event_free(ev);
        off += sprintf(big + off, "ONE=more") + 1;
        assert_int_equal(svc_event_parse(big, off, &ev), -E2BIG);

        /* a key longer than SVC_KEY_MAX is left out, the event kept */
        memset(big, 'K', SVC_KEY_MAX + 1);
        strcpy(big + SVC_KEY_MAX + 1, "=v");
        off = SVC_KEY_MAX + 4;
        memcpy(big + off, "DEVPATH=/d", 11);
        assert_int_equal(svc_event_parse(big, off + 11, &ev), 0);
        assert_int_equal(ev->n_env, 1);
        svc_event_free(ev);
        free(big);
}

/* ---- the socket ---- */

static char tmpdir[64];

static int setup_tmp(void **state) {
        strcpy(tmpdir, "/tmp/vhp-svc.XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

static void path_in_tmp(char *buf, size_t len, const char *name) {
        snprintf(buf, len, "%s/%s", tmpdir, name);
}

static void test_listen_path(void **state) {
        char path[128];
        struct stat st;
        int fd, fd2;

        path_in_tmp(path, sizeof(path), "s.sock");
        assert_int_equal(svc_listen_path(path, &fd), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0600);
        /* someone listens: refused */
        assert_int_equal(svc_listen_path(path, &fd2), -EADDRINUSE);
        /* a socket file nobody listens on any more is replaced */
        close(fd);
        assert_int_equal(svc_listen_path(path, &fd2), 0);
        close(fd2);
        /* no temporary name is left behind */
        char tmpname[160];
        snprintf(tmpname, sizeof(tmpname), "%s.%d~", path, (int)getpid());
        assert_int_equal(lstat(tmpname, &st), -1);
        /* something that is not a socket is never replaced */
        assert_int_equal(unlink(path), 0);
        int reg = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(reg >= 0);
        close(reg);
        assert_int_equal(svc_listen_path(path, &fd2), -EEXIST);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(unlink(path), 0);
        /* a path too long for sockaddr_un */
        char longp[200];
        memset(longp, 'a', sizeof(longp) - 1);
        longp[sizeof(longp) - 1] = 0;
        assert_int_equal(svc_listen_path(longp, &fd), -ENAMETOOLONG);
}

/* Runs svc_listen_fd_from_env in a child with fd 3 set up by kind: 0 a listening SEQPACKET
 * socket, 1 a stream socket, 2 nothing (LISTEN_PID of another process). Returns the result + 50. */
static int listen_env_in_child(int kind) {
        pid_t pid = fork();
        if (pid == 0) {
                char path[128], num[32];
                int fd = -1, r;
                path_in_tmp(path, sizeof(path), "env.sock");
                unlink(path);
                if (kind == 0)
                        svc_listen_path(path, &fd);
                else if (kind == 1)
                        fd = socket(AF_UNIX, SOCK_STREAM, 0);
                if (fd >= 0 && fd != 3) {
                        dup2(fd, 3);
                        close(fd);
                }
                snprintf(num, sizeof(num), "%d", kind == 2 ? getpid() + 1 : getpid());
                setenv("LISTEN_PID", num, 1);
                setenv("LISTEN_FDS", "1", 1);
                setenv("LISTEN_FDNAMES", "vhotplug-helper.socket", 1);
                r = svc_listen_fd_from_env(&fd);
                if (getenv("LISTEN_PID") || getenv("LISTEN_FDS") || getenv("LISTEN_FDNAMES"))
                        _exit(99);
                if (r == 1 && (fd != 3 || !(fcntl(3, F_GETFD) & FD_CLOEXEC)))
                        _exit(98);
                _exit(r + 50);
        }
        int status;
        waitpid(pid, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_listen_fd_from_env(void **state) {
        assert_int_equal(listen_env_in_child(0), 51);
        assert_int_equal(listen_env_in_child(1), 50 - EINVAL);
        assert_int_equal(listen_env_in_child(2), 50);
}

/* ---- the loop ---- */

struct run_ctx {
        char log[128];     /* handler's record: "S devpath seq" / "E devpath seq" */
        char started[128]; /* created by the first handler (the test waits for it) */
        int sleep_ms;
        int gate; /* first event of /d0 waits until one of /d1 has started */
};

static void append(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(const char *path, const char *fmt, ...) {
        char line[256];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, line, n) != n)
                abort();
        close(fd);
}

static const char *env_value(char *const *envp, const char *key) {
        size_t l = strlen(key);
        for (; *envp; envp++)
                if (strncmp(*envp, key, l) == 0 && (*envp)[l] == '=')
                        return *envp + l + 1;
        return "";
}

static bool file_has(const char *path, const char *needle) {
        char buf[65536];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
        if (fd >= 0)
                close(fd);
        if (n < 0)
                return false;
        buf[n] = 0;
        return strstr(buf, needle) != NULL;
}

static int handle(void *userdata, const struct svc_event *ev) {
        struct run_ctx *c = userdata;
        const char *seq = env_value(ev->envp, "SEQNUM");
        append(c->log, "S %s %s\n", ev->devpath, seq);
        close(open(c->started, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        if (c->gate && strcmp(ev->devpath, "/d0") == 0 && strcmp(seq, "0") == 0)
                for (int i = 0; i < 1000 && !file_has(c->log, "S /d1 "); i++)
                        sleep_ms(10);
        if (c->sleep_ms)
                sleep_ms(c->sleep_ms);
        append(c->log, "E %s %s\n", ev->devpath, seq);
        return strcmp(env_value(ev->envp, "FAIL"), "1") == 0 ? 3 : 0;
}

/* Runs svc_run in a child process on fd; returns its pid. The child writes its stats to the pipe
 * wfd and exits with -r. */
static pid_t start_service(int fd, unsigned max_children, int idle_ms, struct run_ctx *c, int wfd) {
        pid_t pid = fork();
        if (pid == 0) {
                static const struct svc_ops ops = {.handle = handle};
                prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
                struct svc_params p = {
                        .fd = fd, .max_children = max_children, .max_queued = 1024, .idle_exit_ms = idle_ms};
                struct svc_stats st = {0};
                int r = svc_run(&p, &ops, c, &st);
                if (write(wfd, &st, sizeof(st)) != sizeof(st))
                        _exit(100);
                _exit(-r);
        }
        return pid;
}

static int wait_service(pid_t pid, int rfd, struct svc_stats *st) {
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(read(rfd, st, sizeof(*st)), sizeof(*st));
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void send_msg(const char *path, const void *msg, size_t len) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        strcpy(sa.sun_path, path);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(send(fd, msg, len, MSG_NOSIGNAL), (ssize_t)len);
        close(fd);
}

static void send_event(const char *path, int dev, int seq) {
        char msg[128];
        int n = snprintf(msg, sizeof(msg), "ACTION=%s%cDEVPATH=/d%d%cSEQNUM=%d", seq % 2 ? "remove" : "add",
                         0, dev, 0, seq);
        send_msg(path, msg, n + 1);
}

/* Checks the handler's record: every (device, seq) sent started and ended exactly once, one
 * device's events ran one after another in seq order, at most max ran at once. Returns the
 * largest number that ran at once. */
static int check_record(const char *log, int n_dev, int n_seq, int max) {
        int next[64] = {0}, running[64] = {0}, now = 0, peak = 0;
        char kind, dp[64];
        int seq;
        FILE *f = fopen(log, "re");
        assert_non_null(f);
        assert_true(n_dev <= 64);
        while (fscanf(f, " %c %63s %d", &kind, dp, &seq) == 3) {
                int d = atoi(dp + 2);
                assert_true(d >= 0 && d < n_dev);
                if (kind == 'S') {
                        if (running[d] || seq != next[d])
                                fail_msg("%s: event %d started while %s (expected %d next)", dp, seq,
                                         running[d] ? "one ran" : "out of order", next[d]);
                        running[d] = 1;
                        if (++now > peak)
                                peak = now;
                } else {
                        assert_true(running[d] && seq == next[d]);
                        running[d] = 0;
                        next[d]++;
                        now--;
                }
        }
        fclose(f);
        for (int d = 0; d < n_dev; d++)
                if (next[d] != n_seq)
                        fail_msg("/d%d: %d of %d events handled", d, next[d], n_seq);
        if (peak > max)
                fail_msg("%d events ran at once, bound %d", peak, max);
        return peak;
}

/* n_dev devices, n_seq events each, all sent before the service starts (as at a coldplug, they
 * wait in the socket), handled with at most max_children at a time. Returns the peak. */
static int run_order(const char *name, int n_dev, int n_seq, unsigned max_children) {
        struct run_ctx c = {.sleep_ms = 1, .gate = 1};
        char sock[128], f[64];
        int fd, pfd[2], peak;
        struct svc_stats st;

        snprintf(f, sizeof(f), "%s.log", name);
        path_in_tmp(c.log, sizeof(c.log), f);
        snprintf(f, sizeof(f), "%s.started", name);
        path_in_tmp(c.started, sizeof(c.started), f);
        snprintf(f, sizeof(f), "%s.sock", name);
        path_in_tmp(sock, sizeof(sock), f);
        assert_int_equal(svc_listen_path(sock, &fd), 0);
        assert_int_equal(pipe(pfd), 0);
        for (int seq = 0; seq < n_seq; seq++)
                for (int d = 0; d < n_dev; d++)
                        send_event(sock, d, seq);
        pid_t pid = start_service(fd, max_children, 100, &c, pfd[1]);
        assert_int_equal(wait_service(pid, pfd[0], &st), 0);
        assert_int_equal(st.received, n_dev * n_seq);
        assert_int_equal(st.handled, n_dev * n_seq);
        assert_int_equal(st.failed, 0);
        assert_int_equal(st.dropped, 0);
        peak = check_record(c.log, n_dev, n_seq, (int)max_children < n_dev ? (int)max_children : n_dev);
        close(fd);
        close(pfd[0]);
        close(pfd[1]);
        return peak;
}

static void test_order_and_bound(void **state) {
        /* More devices than children: the bound holds. /d0's first event waits until /d1's has
         * started, so devices do run in parallel. */
        assert_true(run_order("bound", 6, 10, 3) >= 2);
        /* More children than devices: a device's next event never starts beside its previous one
         * (nothing else would stop it here). */
        assert_true(run_order("order", 2, 30, 4) >= 2);
}

static void test_stop_mid_burst_loses_nothing(void **state) {
        struct run_ctx c = {.sleep_ms = 5};
        char sock[128];
        int fd, pfd[2];
        struct svc_stats st1, st2;

        path_in_tmp(c.log, sizeof(c.log), "stop.log");
        path_in_tmp(c.started, sizeof(c.started), "stop.started");
        path_in_tmp(sock, sizeof(sock), "stop.sock");
        assert_int_equal(svc_listen_path(sock, &fd), 0);
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = start_service(fd, 2, -1, &c, pfd[1]);
        for (int seq = 0; seq < 20; seq++)
                for (int d = 0; d < 4; d++)
                        send_event(sock, d, seq);
        while (access(c.started, F_OK) < 0)
                sleep_ms(1);
        kill(pid, SIGTERM);
        assert_int_equal(wait_service(pid, pfd[0], &st1), 0);
        /* The socket kept the rest: a second start (systemd's, on the next readable) takes it. */
        pid = start_service(fd, 2, 50, &c, pfd[1]);
        assert_int_equal(wait_service(pid, pfd[0], &st2), 0);
        assert_int_equal(st1.received + st2.received, 80);
        assert_int_equal(st1.handled, st1.received);
        assert_int_equal(st2.handled, st2.received);
        check_record(c.log, 4, 20, 2);
        close(fd);
        close(pfd[0]);
        close(pfd[1]);
}

static void test_bad_messages_dropped(void **state) {
        struct run_ctx c = {0};
        char sock[128];
        int fd, pfd[2];
        struct svc_stats st;

        path_in_tmp(c.log, sizeof(c.log), "bad.log");
        path_in_tmp(c.started, sizeof(c.started), "bad.started");
        path_in_tmp(sock, sizeof(sock), "bad.sock");
        assert_int_equal(svc_listen_path(sock, &fd), 0);
        assert_int_equal(pipe(pfd), 0);
        send_event(sock, 0, 0);
        send_msg(sock, "", 0);
        send_msg(sock, "ACTION=add\0SEQNUM=1", 20);
        size_t big = SVC_MSG_MAX + 100;
        char *m = calloc(1, big);
        memcpy(m, "DEVPATH=/d0", 11);
        send_msg(sock, m, big);
        free(m);
        send_msg(sock, "DEVPATH=/d0\0SEQNUM=1\0FAIL=1", 28);
        pid_t pid = start_service(fd, 2, 50, &c, pfd[1]);
        assert_int_equal(wait_service(pid, pfd[0], &st), 0);
        assert_int_equal(st.received, 5);
        assert_int_equal(st.dropped, 3);
        assert_int_equal(st.handled, 2);
        assert_int_equal(st.failed, 1); /* exit status 3 */
        check_record(c.log, 1, 2, 1);
        close(fd);
        close(pfd[0]);
        close(pfd[1]);
}

/* ---- the configuration ---- */

static void write_file(const char *path, const char *text) {
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static void test_config_refresh(void **state) {
        char path[128], tmp[140];
        struct cfg_error err;
        path_in_tmp(path, sizeof(path), "vhotplug.conf");
        struct svc_config c = {.path = path, .flags = CFG_NO_STRICT_PERMS};
        const char *v1 =
                "{ \"vms\": [ { \"name\": \"vm1\", \"type\": \"qemu\", \"socket\": \"/run/a\" } ] }\n";
        const char *v2 =
                "{ \"vms\": [ { \"name\": \"vm2\", \"type\": \"qemu\", \"socket\": \"/run/b\" } ] }\n";

        /* missing: read (fails) once, then unchanged */
        assert_int_equal(svc_config_refresh(&c, &err), 1);
        assert_null(c.cfg);
        assert_int_equal(c.r, -ENOENT);
        assert_int_equal(svc_config_refresh(&c, &err), 0);
        /* appears */
        write_file(path, v1);
        assert_int_equal(svc_config_refresh(&c, &err), 1);
        assert_non_null(c.cfg);
        assert_non_null(cfg_find_vm(c.cfg, "vm1"));
        assert_int_equal(svc_config_refresh(&c, &err), 0);
        /* replaced by rename (an editor's save): new inode */
        snprintf(tmp, sizeof(tmp), "%s.new", path);
        write_file(tmp, v2);
        assert_int_equal(rename(tmp, path), 0);
        assert_int_equal(svc_config_refresh(&c, &err), 1);
        assert_non_null(cfg_find_vm(c.cfg, "vm2"));
        /* chmod only (ctime): read again */
        assert_int_equal(chmod(path, 0640), 0);
        assert_int_equal(svc_config_refresh(&c, &err), 1);
        assert_non_null(c.cfg);
        /* broken: no configuration until fixed */
        write_file(path, "{ \"vms\": [ \n");
        assert_int_equal(svc_config_refresh(&c, &err), 1);
        assert_null(c.cfg);
        assert_true(c.r < 0);
        assert_non_null(strstr(err.msg, "vhotplug.conf"));
        assert_int_equal(svc_config_refresh(&c, &err), 0);
        write_file(path, v1);
        assert_int_equal(svc_config_refresh(&c, &err), 1);
        assert_non_null(cfg_find_vm(c.cfg, "vm1"));
        /* removed */
        unlink(path);
        assert_int_equal(svc_config_refresh(&c, &err), 1);
        assert_null(c.cfg);
        svc_config_clear(&c);
}

int main(void) {
        alarm(120); /* a service that never stops must not hang the suite */
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_table),
                cmocka_unit_test(test_parse_bounds),
                cmocka_unit_test_setup_teardown(test_listen_path, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_listen_fd_from_env, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_order_and_bound, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_stop_mid_burst_loses_nothing, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_bad_messages_dropped, setup_tmp, teardown_tmp),
                cmocka_unit_test_setup_teardown(test_config_refresh, setup_tmp, teardown_tmp),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
