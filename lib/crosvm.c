/* crosvm client: runs the crosvm CLI with a time bound and parses its answers. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "crosvm.h"
#include "errmsg.h"
#include "util.h"

#define CROSVM_TOKENS_MAX (1 + 3 * CROSVM_PORTS_MAX)

extern char **environ;

/* ---- output parsing ---- */

/* Copies the last non-empty line of out into buf, control characters replaced by '?'. */
static void last_line(const char *out, char *buf, size_t len) {
        size_t end = strlen(out);

        while (end > 0 && (out[end - 1] == '\n' || out[end - 1] == '\r' || out[end - 1] == ' '))
                end--;
        size_t start = end;
        while (start > 0 && out[start - 1] != '\n')
                start--;
        size_t n = end - start < len - 1 ? end - start : len - 1;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)out[start + i];
                buf[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
        }
        buf[n] = '\0';
}

/* Splits line in place at single spaces. Returns the token count, or max + 1 when there are more. */
static size_t split_tokens(char *line, char **tok, size_t max) {
        size_t n = 0;
        char *save = NULL;

        for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
                if (n == max)
                        return max + 1;
                tok[n++] = t;
        }
        return n;
}

static int parse_port(const char *s, int *ret) {
        uint64_t v;
        if (strlen(s) > 3 || parse_u64(s, 255, &v) < 0 || v == 0)
                return -EPROTO;
        *ret = (int)v;
        return 0;
}

static int parse_hex16(const char *s, uint16_t *ret) {
        return parse_hex4(s, ret) < 0 ? -EPROTO : 0;
}

static const struct {
        const char *word;
        int error;
} result_words[] = {
        {"no_available_port", -ENOSPC},
        {"no_such_device", -ENOENT},
        {"no_such_port", -ENOENT},
        {"failed_to_open_device", -EREMOTEIO},
        {"failed_to_init_host_device", -EREMOTEIO},
};

static int result_word_error(const char *word) {
        for (size_t i = 0; i < ELEMENTSOF(result_words); i++)
                if (strcmp(word, result_words[i].word) == 0)
                        return result_words[i].error;
        return -EPROTO;
}

int crosvm_parse_attach_output(const char *out, int *ret_port) {
        char line[CROSVM_OUTPUT_MAX];
        char *tok[3];

        last_line(out, line, sizeof(line));
        size_t n = split_tokens(line, tok, ELEMENTSOF(tok));
        if (n == 2 && strcmp(tok[0], "ok") == 0)
                return parse_port(tok[1], ret_port);
        if (n == 1)
                return result_word_error(tok[0]);
        return -EPROTO;
}

int crosvm_parse_detach_output(const char *out) {
        char line[CROSVM_OUTPUT_MAX];
        char *tok[3];
        int port;

        last_line(out, line, sizeof(line));
        size_t n = split_tokens(line, tok, ELEMENTSOF(tok));
        if (n == 0 || n > 2)
                return -EPROTO;
        if (strcmp(tok[0], "ok") == 0)
                return n == 1 ? 0 : parse_port(tok[1], &port);
        /* crosvm answers a detach of an empty (or invalid) port with no_such_device; older
         * documentation says no_such_port */
        if (n == 1 && (strcmp(tok[0], "no_such_device") == 0 || strcmp(tok[0], "no_such_port") == 0))
                return -ENOENT;
        return -EPROTO;
}

int crosvm_parse_list_output(const char *out, struct crosvm_usb_device *devs, size_t max, size_t *ret_n) {
        char line[CROSVM_OUTPUT_MAX];
        char *tok[CROSVM_TOKENS_MAX];

        last_line(out, line, sizeof(line));
        size_t n = split_tokens(line, tok, ELEMENTSOF(tok));
        if (n > ELEMENTSOF(tok))
                return -E2BIG;
        if (n == 0 || strcmp(tok[0], "devices") != 0 || (n - 1) % 3 != 0)
                return -EPROTO;
        if ((n - 1) / 3 > max)
                return -E2BIG;
        for (size_t i = 1, k = 0; i < n; i += 3, k++) {
                struct crosvm_usb_device d;
                if (parse_port(tok[i], &d.port) < 0 || parse_hex16(tok[i + 1], &d.vendor_id) < 0 ||
                    parse_hex16(tok[i + 2], &d.product_id) < 0)
                        return -EPROTO;
                devs[k] = d;
        }
        *ret_n = (n - 1) / 3;
        return 0;
}

int crosvm_parse_error_output(const char *out) {
        char line[CROSVM_OUTPUT_MAX];

        last_line(out, line, sizeof(line));
        if (strncmp(line, "error failed to open device", 27) == 0) {
                if (strstr(line, "(os error 2)") || strstr(line, "No such file"))
                        return -ENOENT;
                if (strstr(line, "(os error 13)") || strstr(line, "Permission denied"))
                        return -EACCES;
                return -EREMOTEIO;
        }
        if (strncmp(line, "error unexpected response", 25) == 0)
                return -EPROTO;
        return -EHOSTDOWN;
}

/* ---- running crosvm ---- */

int crosvm_find_binary(const char *name, char **ret) {
        if (!name || !*name)
                return -ENOEXEC;
        if (strchr(name, '/')) {
                if (access(name, X_OK) < 0)
                        return -ENOEXEC;
                *ret = strdup(name);
                return *ret ? 0 : -ENOMEM;
        }

        const char *dir = CROSVM_SAFE_PATH;
        while (*dir) {
                size_t dl = strcspn(dir, ":");
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%.*s/%s", (int)dl, dir, name) < 0)
                        return -ENOMEM;
                struct stat st;
                if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0) {
                        *ret = TAKE_PTR(p);
                        return 0;
                }
                dir += dl + (dir[dl] == ':');
        }
        return -ENOEXEC;
}

struct crosvm_run {
        char out[CROSVM_OUTPUT_MAX];
        size_t len;
        int status; /* waitpid status */
};

/* Starts bin with stdout on out_fd, stdin and stderr on /dev/null, in its own process group so a
 * timeout can kill whatever it started. */
static int spawn_child(const char *bin, char *const argv[], int out_fd, pid_t *ret) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        int r;

        sigemptyset(&none);
        sigfillset(&all);
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
        posix_spawnattr_setpgroup(&attr, 0);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
        posix_spawnattr_setflags(&attr,
                                 POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        r = posix_spawn(ret, bin, &fa, &attr, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        return -r;
}

/* Reads the child's stdout until EOF or deadline, keeping the first CROSVM_OUTPUT_MAX - 1 bytes. */
static int read_output(int fd, int64_t deadline, struct crosvm_run *run) {
        for (;;) {
                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                int r = poll(&pfd, 1, (int)(left > 60000 ? 60000 : left));
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r <= 0)
                        continue;

                char buf[1024];
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : 0;
                size_t room = sizeof(run->out) - 1 - run->len;
                size_t keep = (size_t)n < room ? (size_t)n : room;
                memcpy(run->out + run->len, buf, keep);
                run->len += keep;
        }
}

/* Waits for pid to exit before deadline, kills what it left in its process group, then reaps it.
 * The group is killed while pid is still a zombie, so its id cannot have been reused. */
static int reap_child(pid_t pid, int64_t deadline, int *status) {
        for (;;) {
                siginfo_t si = {0};
                if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 && errno != EINTR)
                        return -errno;
                if (si.si_pid == pid)
                        break;
                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                struct timespec ts = {.tv_nsec = (left < 5 ? left : 5) * 1000000};
                nanosleep(&ts, NULL);
        }
        kill(-pid, SIGKILL);
        while (waitpid(pid, status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

static void kill_child(pid_t pid) {
        int status;

        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
}

static int crosvm_run(const char *bin, char *const argv[], int timeout_ms, struct crosvm_run *run) {
        int64_t deadline = now_ms() + timeout_ms;
        int pipefd[2];
        pid_t pid;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        int r = spawn_child(bin, argv, pipefd[1], &pid);
        close(pipefd[1]);
        if (r < 0) {
                close(pipefd[0]);
                return -ENOEXEC;
        }

        r = read_output(pipefd[0], deadline, run);
        close(pipefd[0]);
        run->out[run->len] = '\0';
        if (r == 0)
                r = reap_child(pid, deadline, &run->status);
        if (r < 0) {
                kill_child(pid);
                return r;
        }
        return 0;
}

/* Runs `crosvm GROUP ARGS...` (GROUP "usb" or "vfio") and returns its output in run, whatever its
 * exit status; only failures to run it, timeouts and deaths by signal are errors here. */
static int crosvm_cmd(const char *bin_name, const char *group, char *const args[], int timeout_ms,
                      struct crosvm_run *run, char **ret_error) {
        _cleanup_free_ char *bin = NULL;
        char *argv[8] = {(char *)"crosvm", (char *)group};
        size_t n = 2;

        if (ret_error)
                *ret_error = NULL;
        if (crosvm_find_binary(bin_name, &bin) < 0)
                return errmsg_set(ret_error, -ENOEXEC, "crosvm binary '%s' not found or not executable",
                                  bin_name ? bin_name : "");
        for (size_t i = 0; args[i] && n < ELEMENTSOF(argv) - 1; i++)
                argv[n++] = args[i];
        argv[n] = NULL;

        int r = crosvm_run(bin, argv, timeout_ms, run);
        if (r == -ETIMEDOUT)
                return errmsg_set(ret_error, r, "%s %s %s did not finish within %d ms, killed", bin, group,
                                  args[0], timeout_ms);
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot run %s: %s", bin, strerror(-r));
        if (!WIFEXITED(run->status))
                return errmsg_set(ret_error, -EPROTO, "%s %s %s died with signal %d", bin, group, args[0],
                                  WTERMSIG(run->status));
        return 0;
}

/* Runs `crosvm usb ARGS...` and returns its output when it exited with status 0. Failures to run,
 * timeouts and "error ..." exits are classified here. */
static int crosvm_usb(const char *bin_name, char *const args[], int timeout_ms, struct crosvm_run *run,
                      char **ret_error) {
        char line[CROSVM_OUTPUT_MAX];
        int r = crosvm_cmd(bin_name, "usb", args, timeout_ms, run, ret_error);

        if (r < 0)
                return r;
        last_line(run->out, line, sizeof(line));
        if (WEXITSTATUS(run->status) == 0)
                return 0;
        if (strncmp(line, "error", 5) == 0)
                return errmsg_set(ret_error, crosvm_parse_error_output(line), "crosvm: %s", line);
        return errmsg_set(ret_error, -EPROTO, "crosvm exited with status %d: %s", WEXITSTATUS(run->status),
                          line);
}

/* Sets the error for an answer the parser refused. */
static int answer_error(char **ret_error, int r, const char *out) {
        char line[CROSVM_OUTPUT_MAX];

        last_line(out, line, sizeof(line));
        return errmsg_set(ret_error, r, "crosvm: %s", *line ? line : "(no output)");
}

int crosvm_usb_attach(const char *bin, const char *socket, const char *devnode, int timeout_ms,
                      int *ret_port, char **ret_error) {
        char *const args[] = {(char *)"attach", (char *)"00:00:00:00", (char *)devnode, (char *)socket,
                              NULL};
        _cleanup_free_ struct crosvm_run *run = calloc(1, sizeof(*run));

        if (!run)
                return -ENOMEM;
        int r = crosvm_usb(bin, args, timeout_ms, run, ret_error);
        if (r < 0)
                return r;
        r = crosvm_parse_attach_output(run->out, ret_port);
        return r < 0 ? answer_error(ret_error, r, run->out) : 0;
}

int crosvm_usb_detach(const char *bin, const char *socket, int port, int timeout_ms, char **ret_error) {
        char portstr[16];
        char *const args[] = {(char *)"detach", portstr, (char *)socket, NULL};
        _cleanup_free_ struct crosvm_run *run = calloc(1, sizeof(*run));

        if (!run)
                return -ENOMEM;
        if (port < 1 || port > 255)
                return errmsg_set(ret_error, -EINVAL, "invalid crosvm port %d", port);
        snprintf(portstr, sizeof(portstr), "%d", port);
        int r = crosvm_usb(bin, args, timeout_ms, run, ret_error);
        if (r < 0)
                return r;
        r = crosvm_parse_detach_output(run->out);
        return r < 0 ? answer_error(ret_error, r, run->out) : 0;
}

int crosvm_usb_list(const char *bin, const char *socket, int timeout_ms, struct crosvm_usb_device **ret,
                    size_t *ret_n, char **ret_error) {
        char *const args[] = {(char *)"list", (char *)socket, NULL};
        _cleanup_free_ struct crosvm_run *run = calloc(1, sizeof(*run));
        _cleanup_free_ struct crosvm_usb_device *devs = calloc(CROSVM_PORTS_MAX, sizeof(*devs));
        size_t n = 0;

        if (!run || !devs)
                return -ENOMEM;
        int r = crosvm_usb(bin, args, timeout_ms, run, ret_error);
        if (r < 0)
                return r;
        r = crosvm_parse_list_output(run->out, devs, CROSVM_PORTS_MAX, &n);
        if (r < 0)
                return answer_error(ret_error, r, run->out);
        *ret = n ? TAKE_PTR(devs) : NULL;
        *ret_n = n;
        return 0;
}

/* ---- vfio (PCI hot-plug) ---- */

int crosvm_vfio_path(const char *pci_addr, char *buf, size_t len) {
        char addr[PCI_ADDRESS_LEN];

        if (pci_address_normalize(pci_addr, addr) < 0)
                return -EINVAL;
        if ((size_t)snprintf(buf, len, "%s%s", CROSVM_VFIO_SYSFS, addr) >= len)
                return -ENAMETOOLONG;
        return 0;
}

int crosvm_parse_vfio_list_output(const char *out, char (*addrs)[PCI_ADDRESS_LEN], size_t max,
                                  size_t *ret_n) {
        char line[CROSVM_OUTPUT_MAX];
        char *tok[1 + CROSVM_PORTS_MAX];
        size_t prefix = strlen(CROSVM_VFIO_SYSFS);

        last_line(out, line, sizeof(line));
        size_t n = split_tokens(line, tok, ELEMENTSOF(tok));
        if (n > ELEMENTSOF(tok))
                return -E2BIG;
        if (n == 0 || strcmp(tok[0], "devices") != 0)
                return -EPROTO;
        if (n - 1 > max)
                return -E2BIG;
        for (size_t i = 1; i < n; i++) {
                char addr[PCI_ADDRESS_LEN];
                /* Only the canonical form crosvm prints: "/sys/bus/pci/devices/dddd:bb:dd.f". */
                if (strncmp(tok[i], CROSVM_VFIO_SYSFS, prefix) != 0 ||
                    pci_address_normalize(tok[i] + prefix, addr) < 0 || strlen(tok[i] + prefix) != 12)
                        return -EPROTO;
                memcpy(addrs[i - 1], addr, sizeof(addr));
        }
        *ret_n = n - 1;
        return 0;
}

/* `crosvm vfio add|remove PATH SOCKET`: nothing on stdout and status 0 when crosvm answered Ok;
 * "unexpected response: <answer>" and status 1 when it refused (e.g. "error: Invalid argument
 * (os error 22)" without a hot-plug bus for the device); status 1 without output when the socket
 * or the path is unusable (crosvm logs why on stderr, which is not kept). */
static int crosvm_vfio(const char *bin, const char *verb, const char *socket, const char *pci_addr,
                       int timeout_ms, char **ret_error) {
        char path[sizeof(CROSVM_VFIO_SYSFS) + PCI_ADDRESS_LEN], line[CROSVM_OUTPUT_MAX];
        char *const args[] = {(char *)verb, path, (char *)socket, NULL};
        _cleanup_free_ struct crosvm_run *run = calloc(1, sizeof(*run));
        int r;

        if (!run)
                return -ENOMEM;
        if (crosvm_vfio_path(pci_addr, path, sizeof(path)) < 0)
                return errmsg_set(ret_error, -EINVAL, "invalid PCI address '%.64s'",
                                  pci_addr ? pci_addr : "");
        r = crosvm_cmd(bin, "vfio", args, timeout_ms, run, ret_error);
        if (r < 0)
                return r;
        if (WEXITSTATUS(run->status) == 0)
                return 0;
        last_line(run->out, line, sizeof(line));
        if (strncmp(line, "unexpected response: ", 21) == 0)
                return errmsg_set(ret_error, -EREMOTEIO, "crosvm vfio %s %s: %s", verb, path, line + 21);
        if (WEXITSTATUS(run->status) == CROSVM_EXIT_INVALID_ARGS)
                return errmsg_set(ret_error, -EOPNOTSUPP, "this crosvm has no `vfio %s` command", verb);
        return errmsg_set(ret_error, -EREMOTEIO, "crosvm vfio %s %s failed with status %d%s%s", verb, path,
                          WEXITSTATUS(run->status),
                          *line ? ": "
                                : " (the VM's control socket or the path was "
                                  "refused; crosvm logs why)",
                          line);
}

int crosvm_vfio_add(const char *bin, const char *socket, const char *pci_addr, int timeout_ms,
                    char **ret_error) {
        return crosvm_vfio(bin, "add", socket, pci_addr, timeout_ms, ret_error);
}

int crosvm_vfio_remove(const char *bin, const char *socket, const char *pci_addr, int timeout_ms,
                       char **ret_error) {
        return crosvm_vfio(bin, "remove", socket, pci_addr, timeout_ms, ret_error);
}

int crosvm_vfio_list(const char *bin, const char *socket, int timeout_ms, char (**ret)[PCI_ADDRESS_LEN],
                     size_t *ret_n, char **ret_error) {
        char *const args[] = {(char *)"list", (char *)socket, NULL};
        _cleanup_free_ struct crosvm_run *run = calloc(1, sizeof(*run));
        _cleanup_free_ char(*addrs)[PCI_ADDRESS_LEN] = calloc(CROSVM_PORTS_MAX, PCI_ADDRESS_LEN);
        char line[CROSVM_OUTPUT_MAX];
        size_t n = 0;
        int r;

        if (!run || !addrs)
                return -ENOMEM;
        r = crosvm_cmd(bin, "vfio", args, timeout_ms, run, ret_error);
        if (r < 0)
                return r;
        last_line(run->out, line, sizeof(line));
        /* Upstream crosvm knows only add and remove: its argument parser refuses "list". */
        if (WEXITSTATUS(run->status) == CROSVM_EXIT_INVALID_ARGS)
                return errmsg_set(ret_error, -EOPNOTSUPP,
                                  "this crosvm cannot list its VFIO devices "
                                  "(no `crosvm vfio list`: upstream crosvm has add and remove only)");
        if (WEXITSTATUS(run->status) != 0)
                return errmsg_set(ret_error, strncmp(line, "error", 5) == 0 ? -EHOSTDOWN : -EPROTO,
                                  "crosvm vfio list exited with status %d%s%s", WEXITSTATUS(run->status),
                                  *line ? ": " : "", line);
        r = crosvm_parse_vfio_list_output(run->out, addrs, CROSVM_PORTS_MAX, &n);
        if (r < 0)
                return answer_error(ret_error, r, run->out);
        *ret = n ? TAKE_PTR(addrs) : NULL;
        *ret_n = n;
        return 0;
}
