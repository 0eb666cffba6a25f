/* vhp-udev-run: runs a udev rule's RUN command line for a list of events the way udevd's workers
 * do, for tests and benchmarks: the command line is split at blanks ('...' and "..." group, no
 * shell), $env{KEY} is replaced by the event's property, and the program is forked and exec'd with
 * the event's properties as its WHOLE environment (nothing else: no PATH), stdin on /dev/null.
 * Like udevd, the events of one device (DEVPATH) run one after another, each only after the
 * previous one's program has exited; different devices may run at the same time (-j).
 *
 *   vhp-udev-run [-j MAX] [-i USEC] [-o TIMES] [-q] CMDLINE EVENTS
 *
 * EVENTS: a file of events separated by empty lines, one KEY=VALUE per line (values are raw bytes
 * up to the newline). -j: programs running at once (default 1: one after another). -i: at least
 * USEC microseconds between two starts (default 0). -o: one line per event, in event order:
 * "INDEX SEQNUM DEVPATH START_US END_US STATUS CPU_US MAXRSS_KB" (CLOCK_REALTIME microseconds; CPU
 * and peak RSS of the program, from wait4). -q: the programs' stderr to /dev/null (else passed on).
 * Exits 0 when every program exited 0, 1 otherwise, 2 on a usage or input error. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 128

struct ev {
        char **env;
        size_t n_env;
        const char *devpath, *seqnum;
        pid_t pid; /* running */
        bool done;
        int64_t start_us, end_us;
        int status;
        int64_t cpu_us;
        long maxrss_kb;
};

static int64_t now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *prop(const struct ev *e, const char *key) {
        size_t l = strlen(key);
        for (size_t i = 0; i < e->n_env; i++)
                if (strncmp(e->env[i], key, l) == 0 && e->env[i][l] == '=')
                        return e->env[i] + l + 1;
        return NULL;
}

/* Reads the events file. */
static struct ev *read_events(const char *path, size_t *ret_n) {
        FILE *f = fopen(path, "re");
        struct ev *evs = NULL;
        size_t n = 0, cap = 0;
        char *line = NULL;
        size_t lcap = 0;
        ssize_t len;
        bool open_ev = false;

        if (!f)
                return NULL;
        while ((len = getline(&line, &lcap, f)) >= 0) {
                if (len > 0 && line[len - 1] == '\n')
                        line[--len] = 0;
                if (len == 0) {
                        open_ev = false;
                        continue;
                }
                if (!open_ev) {
                        if (n == cap) {
                                cap = cap ? 2 * cap : 64;
                                evs = realloc(evs, cap * sizeof(*evs));
                                if (!evs)
                                        exit(2);
                        }
                        evs[n++] = (struct ev){0};
                        open_ev = true;
                }
                struct ev *e = &evs[n - 1];
                e->env = realloc(e->env, (e->n_env + 2) * sizeof(char *));
                if (!e->env || !(e->env[e->n_env++] = strdup(line)))
                        exit(2);
                e->env[e->n_env] = NULL;
        }
        free(line);
        fclose(f);
        for (size_t i = 0; i < n; i++) {
                evs[i].devpath = prop(&evs[i], "DEVPATH");
                evs[i].seqnum = prop(&evs[i], "SEQNUM");
                if (!evs[i].devpath) {
                        fprintf(stderr, "vhp-udev-run: event %zu has no DEVPATH\n", i);
                        exit(2);
                }
        }
        *ret_n = n;
        return evs;
}

/* Splits cmd as udev does for RUN (blanks separate, quotes group) and substitutes $env{KEY}. */
static int build_argv(const char *cmd, const struct ev *e, char *buf, size_t buflen, char **argv) {
        size_t o = 0;
        int argc = 0;
        const char *p = cmd;

        while (*p) {
                while (*p == ' ' || *p == '\t')
                        p++;
                if (!*p)
                        break;
                if (argc == MAX_ARGS - 1)
                        return -E2BIG;
                argv[argc++] = buf + o;
                char quote = 0;
                while (*p && (quote || (*p != ' ' && *p != '\t'))) {
                        if (!quote && (*p == '\'' || *p == '"')) {
                                quote = *p++;
                                continue;
                        }
                        if (quote && *p == quote) {
                                quote = 0;
                                p++;
                                continue;
                        }
                        if (strncmp(p, "$env{", 5) == 0 && strchr(p, '}')) {
                                const char *end = strchr(p, '}');
                                char key[128];
                                snprintf(key, sizeof(key), "%.*s", (int)(end - p - 5), p + 5);
                                const char *v = prop(e, key);
                                size_t vl = v ? strlen(v) : 0;
                                if (o + vl >= buflen)
                                        return -E2BIG;
                                memcpy(buf + o, v ? v : "", vl);
                                o += vl;
                                p = end + 1;
                                continue;
                        }
                        if (o + 1 >= buflen)
                                return -E2BIG;
                        buf[o++] = *p++;
                }
                buf[o++] = 0;
        }
        argv[argc] = NULL;
        return argc > 0 ? 0 : -EINVAL;
}

static bool device_running(const struct ev *evs, size_t upto, const char *devpath) {
        for (size_t i = 0; i < upto; i++)
                if (evs[i].pid > 0 && strcmp(evs[i].devpath, devpath) == 0)
                        return true;
        return false;
}

int main(int argc, char **argv) {
        const char *out = NULL;
        long max = 1, interval = 0;
        bool quiet = false;
        int c;

        while ((c = getopt(argc, argv, "j:i:o:q")) >= 0) {
                switch (c) {
                case 'j':
                        max = strtol(optarg, NULL, 10);
                        break;
                case 'i':
                        interval = strtol(optarg, NULL, 10);
                        break;
                case 'o':
                        out = optarg;
                        break;
                case 'q':
                        quiet = true;
                        break;
                default:
                        return 2;
                }
        }
        if (argc - optind != 2 || max < 1) {
                fprintf(stderr, "usage: vhp-udev-run [-j MAX] [-i USEC] [-o TIMES] [-q] CMDLINE EVENTS\n");
                return 2;
        }
        const char *cmd = argv[optind];
        size_t n;
        struct ev *evs = read_events(argv[optind + 1], &n);
        if (!evs) {
                fprintf(stderr, "vhp-udev-run: cannot read %s\n", argv[optind + 1]);
                return 2;
        }

        size_t next = 0, running = 0, finished = 0;
        int64_t last_start = 0;
        int failed = 0;
        while (finished < n) {
                /* Start the next event when its device is free, a slot is free and the interval has
                 * passed; events start in file order, as udevd takes them from its queue. */
                if (next < n && running < (size_t)max && !device_running(evs, next, evs[next].devpath)) {
                        int64_t wait = last_start + interval - now_us();
                        if (wait > 0) {
                                struct timespec ts = {wait / 1000000, (wait % 1000000) * 1000};
                                nanosleep(&ts, NULL);
                        }
                        struct ev *e = &evs[next];
                        char buf[8192], *av[MAX_ARGS];
                        if (build_argv(cmd, e, buf, sizeof(buf), av) < 0) {
                                fprintf(stderr, "vhp-udev-run: bad command line\n");
                                return 2;
                        }
                        e->start_us = last_start = now_us();
                        pid_t pid = fork();
                        if (pid == 0) {
                                int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
                                dup2(fd, 0);
                                dup2(fd, 1);
                                if (quiet)
                                        dup2(fd, 2);
                                execve(av[0], av, e->env);
                                fprintf(stderr, "vhp-udev-run: %s: %s\n", av[0], strerror(errno));
                                _exit(127);
                        }
                        if (pid < 0) {
                                perror("vhp-udev-run: fork");
                                return 2;
                        }
                        e->pid = pid;
                        running++;
                        next++;
                        continue;
                }
                int status;
                struct rusage ru;
                pid_t pid = wait4(-1, &status, 0, &ru);
                int64_t t = now_us();
                if (pid < 0) {
                        perror("vhp-udev-run: wait");
                        return 2;
                }
                for (size_t i = 0; i < next; i++) {
                        struct ev *e = &evs[i];
                        if (e->pid != pid)
                                continue;
                        e->pid = 0;
                        e->done = true;
                        e->end_us = t;
                        e->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                        e->cpu_us = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec +
                                    (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
                        e->maxrss_kb = ru.ru_maxrss;
                        if (e->status)
                                failed++;
                        running--;
                        finished++;
                }
        }
        if (out) {
                FILE *f = fopen(out, "we");
                if (!f) {
                        perror("vhp-udev-run: output");
                        return 2;
                }
                for (size_t i = 0; i < n; i++)
                        fprintf(f, "%zu %s %s %" PRId64 " %" PRId64 " %d %" PRId64 " %ld\n", i,
                                evs[i].seqnum ? evs[i].seqnum : "-", evs[i].devpath, evs[i].start_us,
                                evs[i].end_us, evs[i].status, evs[i].cpu_us, evs[i].maxrss_kb);
                fclose(f);
        }
        for (size_t i = 0; i < n; i++) {
                for (size_t k = 0; k < evs[i].n_env; k++)
                        free(evs[i].env[k]);
                free(evs[i].env);
        }
        free(evs);
        return failed ? 1 : 0;
}
