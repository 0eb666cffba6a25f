/* vhotplug-helper: handles one udev event, or, with --service, every event that vhotplug-event
 * sends to its socket (lib/service.c), each in a child process. All the work is in lib/event.c
 * and lib/xact.c. */
#include <errno.h>
#include <getopt.h>
#include <libudev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "config.h"
#include "event.h"
#include "json.h"
#include "log.h"
#include "service.h"
#include "util.h"

extern char **environ;

enum { EXIT_CONFIG = 1, EXIT_USAGE = 2, EXIT_REFUSED = 3 };

#define SERVICE_MAX_CHILDREN 8    /* events of different devices handled at the same time */
#define SERVICE_MAX_QUEUED 1024   /* events read and waiting; more wait in the socket */
#define SERVICE_IDLE_EXIT_MS 5000 /* socket-activated: exit after this long with nothing to do */

static void help(void) {
        printf("Usage: vhotplug-helper [OPTIONS] [ACTION DEVPATH]\n"
               "Attach or detach one device according to the vhotplug configuration.\n"
               "Without ACTION and DEVPATH the event is read from the environment.\n"
               "With --service, events come from vhotplug-event(8) through a socket.\n\n"
               "  -c, --config FILE    configuration file (default " CFG_DEFAULT_PATH ")\n"
               "      --db FILE        state database (default: general.database, " CFG_DEFAULT_DATABASE
               ")\n"
               "  -n, --dry-run        decide only; touch neither the database nor any VM\n"
               "      --json           print the decision as one JSON object\n"
               "      --check-config   validate the configuration and exit\n"
               "      --no-strict-perms  accept a configuration or database not root's alone (tests)\n"
               "      --service        handle the events sent to the socket systemd passes "
               "(vhotplug-helper.socket)\n"
               "      --socket PATH    with --service: listen on PATH instead (without systemd)\n"
               "      --idle-exit SEC  with --service: exit after SEC seconds with nothing to do; 0 never\n"
               "                       (default 5 when started by systemd, else 0)\n"
               "  -d, --debug          verbose logging\n"
               "  -h, --help           show this help\n"
               "      --version        show the version\n\n"
               "ACTION is add, remove, bind or change; DEVPATH is udev's /devices/... path (or "
               "/sys/devices/...).\n"
               "Exit status: 0 handled (attached, detached, ignored or deferred), 1 configuration or "
               "internal\n"
               "error, 2 usage error, 3 the VM refused the device.\n");
}

struct options {
        const char *config, *db, *mountinfo;
        bool dry_run, json, debug, check_config, service;
        unsigned cfg_flags;
        const char *action, *devpath;
        const char *socket; /* --service without systemd */
        int idle_exit_ms;   /* -1: the default */
};

static int parse_args(int argc, char **argv, struct options *o) {
        enum {
                ARG_DB = 0x100,
                ARG_JSON,
                ARG_CHECK,
                ARG_NO_STRICT,
                ARG_VERSION,
                ARG_MOUNTINFO,
                ARG_SERVICE,
                ARG_SOCKET,
                ARG_IDLE_EXIT
        };
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"db", required_argument, NULL, ARG_DB},
                {"dry-run", no_argument, NULL, 'n'},
                {"json", no_argument, NULL, ARG_JSON},
                {"check-config", no_argument, NULL, ARG_CHECK},
                {"no-strict-perms", no_argument, NULL, ARG_NO_STRICT},
                {"debug", no_argument, NULL, 'd'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {"mountinfo", required_argument, NULL, ARG_MOUNTINFO},
                {"service", no_argument, NULL, ARG_SERVICE},
                {"socket", required_argument, NULL, ARG_SOCKET},
                {"idle-exit", required_argument, NULL, ARG_IDLE_EXIT},
                {},
        };
        int c;

        *o = (struct options){.config = CFG_DEFAULT_PATH, .idle_exit_ms = -1};
        while ((c = getopt_long(argc, argv, "c:ndh", longopts, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        o->config = optarg;
                        break;
                case ARG_DB:
                        o->db = optarg;
                        break;
                case 'n':
                        o->dry_run = true;
                        break;
                case ARG_JSON:
                        o->json = true;
                        break;
                case ARG_CHECK:
                        o->check_config = true;
                        break;
                case ARG_NO_STRICT:
                        o->cfg_flags |= CFG_NO_STRICT_PERMS;
                        break;
                case ARG_MOUNTINFO:
                        o->mountinfo = optarg;
                        break;
                case ARG_SERVICE:
                        o->service = true;
                        break;
                case ARG_SOCKET:
                        o->socket = optarg;
                        break;
                case ARG_IDLE_EXIT: {
                        char *end;
                        double sec = strtod(optarg, &end);
                        if (*end || end == optarg || !(sec >= 0 && sec <= 86400)) {
                                fprintf(stderr, "vhotplug-helper: --idle-exit: expected seconds, got '%s'\n",
                                        optarg);
                                return -EINVAL;
                        }
                        o->idle_exit_ms = (int)(sec * 1000);
                        break;
                }
                case 'd':
                        o->debug = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("vhotplug-helper " VHP_VERSION "\n");
                        return 0;
                default:
                        fprintf(stderr, "Try 'vhotplug-helper --help' for more information.\n");
                        return -EINVAL;
                }
        }
        if (o->service && argc - optind != 0) {
                fprintf(stderr, "vhotplug-helper: --service takes no ACTION DEVPATH\n");
                return -EINVAL;
        }
        if ((o->socket || o->idle_exit_ms >= 0) && !o->service) {
                fprintf(stderr, "vhotplug-helper: --socket and --idle-exit need --service\n");
                return -EINVAL;
        }
        if (argc - optind == 2) {
                o->action = argv[optind];
                o->devpath = argv[optind + 1];
        } else if (argc - optind != 0) {
                fprintf(stderr, "vhotplug-helper: expected ACTION DEVPATH or no arguments (see --help)\n");
                return -EINVAL;
        }
        return 1;
}

/* The VM's name for the device: QEMU id, or crosvm port. */
static void format_id(const struct xact_result *res, char *buf, size_t len) {
        if (res->vmm_id[0])
                snprintf(buf, len, "%s", res->vmm_id);
        else if (res->crosvm_port >= 0)
                snprintf(buf, len, "port %d", res->crosvm_port);
        else
                buf[0] = '\0';
}

/* The event's line, for a person: the device, what was decided, the VM and the device's id there,
 * the outcome in brackets, the reason, the error (untrusted words: escaped where it is written). */
static void format_summary(const struct event *ev, const struct xact_result *res, char *line, size_t len) {
        char what[160], id[VMM_ID_MAX + 8];

        dev_describe(ev->dev, what, sizeof(what));
        format_id(res, id, sizeof(id));
        if (res->action == XACT_IGNORE && res->outcome != XACT_FAILED)
                snprintf(line, len, "%s: ignore (%s)", what, res->decision.reason);
        else
                snprintf(line, len, "%s: %s -> %s%s%s [%s] (%s)%s%s", what, xact_action_name(res->action),
                         res->vm, id[0] ? " as " : "", id, xact_outcome_name(res->outcome),
                         res->decision.reason, res->error[0] ? ": " : "", res->error);
}

/* The summary on stdout: one line (or one JSON object) per event, untrusted words escaped. */
static void print_result(const struct options *o, const struct event *ev, const struct xact_result *res) {
        char line[2048], safe[4096];
        if (o->json) {
                _cleanup_cjson_ cJSON *j = NULL;
                _cleanup_free_ char *s = NULL;
                if (event_result_to_json(ev, res, &j) == 0 && (s = json_print(j)))
                        printf("%s\n", s);
                return;
        }
        format_summary(ev, res, line, sizeof(line));
        printf("%s\n", str_escape(line, safe, sizeof(safe)));
}

/* The rule that decided, as configuration errors name it: usbPassthrough[0].allow[1]. */
static void format_rule(const struct rule_decision *d, char *buf, size_t len) {
        if (d->entry_index < 0)
                buf[0] = '\0';
        else if (d->rule_index < 0)
                snprintf(buf, len, "%s[%d]", cfg_section_name(d->kind), d->entry_index);
        else
                snprintf(buf, len, "%s[%d].allow[%d]", cfg_section_name(d->kind), d->entry_index,
                         d->rule_index);
}

/* Logs the event once: the summary's line as MESSAGE, a priority and a MESSAGE_ID by outcome, and
 * the event's fields for the journal (vhotplug(7) lists them). printed: the summary went to stdout
 * already; then a record for stderr would only repeat it there. */
static void log_result(const struct event *ev, const struct xact_result *res, bool printed) {
        char id[VMM_ID_MAX + 8], rule[96], seq[24] = "", line[2048];
        const char *msgid;
        int level;

        if (printed && log_target() == LOG_TARGET_STDERR)
                return;
        format_id(res, id, sizeof(id));
        format_rule(&res->decision, rule, sizeof(rule));
        format_summary(ev, res, line, sizeof(line));
        if (ev->seqnum)
                snprintf(seq, sizeof(seq), "%llu", (unsigned long long)ev->seqnum);
        const struct log_field fields[] = {
                {"DEVPATH", ev->dev->devpath},
                {"SEQNUM", seq},
                {"VHOTPLUG_EVENT", ev->action},
                {"VHOTPLUG_ACTION", xact_action_name(res->action)},
                {"VHOTPLUG_VM", res->vm},
                {"VHOTPLUG_KIND", dev_kind_name(ev->dev->kind)},
                {"VHOTPLUG_RULE", rule},
                {"VHOTPLUG_OUTCOME", xact_outcome_name(res->outcome)},
                {"VHOTPLUG_REASON", res->decision.reason},
                {"VHOTPLUG_VMM_ID", id},
                {"VHOTPLUG_ERROR", res->error},
                {NULL},
        };

        xact_log_class(res, &level, &msgid);
        log_event(level, msgid, fields, "%s", line);
}

/* One event, from the arguments or from envp (the process environment, or a message of the
 * service): the helper's whole per-event work, the same in every mode. Returns the exit status. */
static int handle_one(const struct options *o, const struct cfg *cfg, char *const *envp) {
        struct udev *udev = NULL;
        struct event ev = {0};
        struct xact_result res;
        char err[512];
        int r;

        if (!o->action) {
                const char *a = "?", *d = "?", *s = "-";
                for (char *const *e = envp; e && *e; e++) {
                        if (strncmp(*e, "ACTION=", 7) == 0 && a[0] == '?')
                                a = *e + 7;
                        else if (strncmp(*e, "DEVPATH=", 8) == 0 && d[0] == '?')
                                d = *e + 8;
                        else if (strncmp(*e, "SEQNUM=", 7) == 0 && s[0] == '-')
                                s = *e + 7;
                }
                log_debug("%.16s %.200s: handling (seqnum %.20s)", a, d, s);
        }
        udev = udev_new();
        if (!udev)
                return log_error_errno(ENOMEM, "Failed to initialize libudev: %m"), EXIT_CONFIG;
        r = event_new(udev, o->action, o->devpath, envp, &ev, err, sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                r = o->action || r == -EINVAL ? EXIT_USAGE : EXIT_CONFIG;
                goto out;
        }
        struct xact_ctx ctx = {
                .cfg = cfg,
                .udev = udev,
                .db_path = o->db,
                .mountinfo = o->mountinfo,
                .dry_run = o->dry_run,
                .no_strict_perms = o->cfg_flags & CFG_NO_STRICT_PERMS,
        };
        r = event_handle(&ctx, &ev, &res);
        if (res.notice[0])
                log_warning("%s", res.notice);
        /* One line per event: the log record; the summary too when someone reads stdout (a terminal,
         * --json, a dry run, whose answer it is). */
        bool printed = o->json || o->dry_run || isatty(STDOUT_FILENO);
        if (printed)
                print_result(o, &ev, &res);
        log_result(&ev, &res, printed && !o->json);
        if (r < 0)
                r = EXIT_CONFIG;
        else
                r = res.outcome == XACT_FAILED ? EXIT_REFUSED : 0;
out:
        event_clear(&ev);
        udev_unref(udev);
        return r;
}

/* --service: options and the configuration the event children inherit. */
struct service {
        const struct options *o;
        struct svc_config conf;
};

/* Before each event: reads the configuration again when the file changed. Without a valid one
 * the event is dropped, as the helper run per event fails without one; logged once per change. */
static int service_prepare(void *userdata, const struct svc_event *ev) {
        struct service *s = userdata;
        struct cfg_error cerr;

        if (svc_config_refresh(&s->conf, &cerr) > 0) {
                if (!s->conf.cfg)
                        log_error("%s; events are dropped until it is fixed", cerr.msg);
                else
                        for (size_t i = 0; i < s->conf.cfg->n_warnings; i++)
                                log_warning("%s", s->conf.cfg->warnings[i]);
        }
        if (!s->conf.cfg)
                log_debug("%s: event dropped (no valid configuration)", ev->devpath);
        return s->conf.cfg ? 0 : s->conf.r;
}

static int service_handle(void *userdata, const struct svc_event *ev) {
        struct service *s = userdata;
        return handle_one(s->o, s->conf.cfg, ev->envp);
}

static void service_problem(void *userdata, int r, const char *what) {
        log_warning("%s", what);
}

/* The process's peak RSS in KiB: VmHWM, not getrusage(), which also counts the process systemd
 * forked before the exec. */
static long peak_rss_kb(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
        char line[128];
        long kb;
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "VmHWM: %ld", &kb) == 1)
                        return kb;
        return -1;
}

static int run_service(const struct options *o) {
        static const struct svc_ops ops = {
                .prepare = service_prepare,
                .handle = service_handle,
                .problem = service_problem,
        };
        struct service s = {.o = o, .conf = {.path = o->config, .flags = o->cfg_flags}};
        struct svc_params p = {.max_children = SERVICE_MAX_CHILDREN, .max_queued = SERVICE_MAX_QUEUED};
        struct svc_stats stats = {0};
        bool own_socket;
        int r;

        r = svc_listen_fd_from_env(&p.fd);
        if (r < 0)
                return log_error_errno(
                               r,
                               "The socket systemd passed is not one listening SOCK_SEQPACKET unix socket"),
                       EXIT_CONFIG;
        if (r == 0 && !o->socket) {
                log_error("--service needs systemd socket activation (vhotplug-helper.socket) or --socket "
                          "PATH");
                return EXIT_USAGE;
        }
        p.idle_exit_ms = o->idle_exit_ms >= 0 ? o->idle_exit_ms : r > 0 ? SERVICE_IDLE_EXIT_MS : 0;
        if (p.idle_exit_ms == 0)
                p.idle_exit_ms = -1;
        own_socket = r == 0;
        if (own_socket) {
                r = svc_listen_path(o->socket, &p.fd);
                if (r < 0)
                        return log_error_errno(r, "Cannot listen on %s: %m", o->socket), EXIT_CONFIG;
        }
        /* Each event's record comes from a child that exits at once: name this process in it. */
        log_set_object_pid(getpid());
        r = svc_run(&p, &ops, &s, &stats);
        if (r < 0)
                log_error_errno(r, "Service stopped: %m");
        log_debug("%lu events received, %lu handled (%lu failed), %lu dropped; peak RSS: service %ld KiB, "
                  "event children %ld KiB",
                  stats.received, stats.handled, stats.failed, stats.dropped, peak_rss_kb(),
                  stats.child_maxrss_kb);
        if (own_socket)
                unlink(o->socket);
        close(p.fd);
        svc_config_clear(&s.conf);
        return r < 0 ? EXIT_CONFIG : 0;
}

static int run(int argc, char **argv) {
        struct options o;
        struct cfg *cfg = NULL;
        struct cfg_error cerr;
        int r;

        r = parse_args(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : 0;
        log_setup("vhotplug-helper", o.debug, false);
        if (o.service && !o.check_config)
                return run_service(&o);

        r = cfg_load(o.config, o.cfg_flags | (o.check_config ? CFG_CHECK_HOST : 0), &cfg, &cerr);
        if (r < 0) {
                log_error("%s", cerr.msg);
                return EXIT_CONFIG;
        }
        for (size_t i = 0; i < cfg->n_warnings; i++)
                log_warning("%s", cfg->warnings[i]);
        if (o.check_config) {
                for (size_t i = 0; i < cfg->n_notes; i++)
                        printf("note: %s\n", cfg->notes[i]);
                printf("%s: configuration is valid\n", o.config);
                cfg_free(cfg);
                return 0;
        }

        r = handle_one(&o, cfg, environ);
        cfg_free(cfg);
        return r;
}

int main(int argc, char **argv) {
        return run(argc, argv);
}
