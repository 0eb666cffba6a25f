/* vhotplug-api: serves the JSON control protocol (the older daemon's) on the sockets systemd
 * passes, or on --listen addresses, or on those general.api configures. All the work is in
 * lib/api.c (server), lib/ops.c (operations) and lib/notify.c (notifications). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api.h"
#include "cleanup.h"
#include "config.h"
#include "log.h"
#include "util.h"

enum { EXIT_CONFIG = 1, EXIT_USAGE = 2 };
#define MAX_LISTEN 16

static void help(void) {
        printf("Usage: vhotplug-api [OPTIONS]\n"
               "Serve the vhotplug JSON API (list, attach, detach, notifications) to vhotplugctl and other\n"
               "clients. Under systemd it is socket-activated (see vhotplug-generator); otherwise it "
               "listens\n"
               "on --listen addresses, else on the transports of general.api.\n\n"
               "  -c, --config FILE        configuration file (default " CFG_DEFAULT_PATH ")\n"
               "      --db FILE            state database (default: general.database)\n"
               "  -l, --listen ADDR        unix:PATH, vsock:PORT or tcp:HOST:PORT (repeatable)\n"
               "      --idle-exit SEC      exit after SEC seconds without a connection (0: never;\n"
               "                           default 30 when socket-activated, else 0)\n"
               "      --client-timeout SEC close a client that sends nothing for SEC seconds (default 60;\n"
               "                           not one that listens for notifications)\n"
               "      --max-clients N      connections served at once (default 256)\n"
               "      --no-strict-perms    accept a configuration or database not root's alone (tests)\n"
               "  -d, --debug              verbose logging\n"
               "  -h, --help               show this help\n"
               "      --version            show the version\n\n"
               "Exit status: 0 stopped or idle, 1 configuration or socket error, 2 usage error.\n");
}

struct options {
        const char *config, *db, *mountinfo;
        const char *listen[MAX_LISTEN];
        size_t n_listen;
        int idle_exit_s; /* -1: the default */
        int client_timeout_s, max_clients;
        bool debug;
        unsigned cfg_flags;
};

static int parse_int(const char *s, int max, int *ret) {
        uint64_t v;
        if (parse_u64(s, (uint64_t)max, &v) < 0)
                return -EINVAL;
        *ret = (int)v;
        return 0;
}

static int parse_args(int argc, char **argv, struct options *o) {
        enum {
                ARG_DB = 0x100,
                ARG_IDLE,
                ARG_CLIENT_TIMEOUT,
                ARG_MAX_CLIENTS,
                ARG_NO_STRICT,
                ARG_VERSION,
                ARG_MOUNTINFO
        };
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"db", required_argument, NULL, ARG_DB},
                {"listen", required_argument, NULL, 'l'},
                {"idle-exit", required_argument, NULL, ARG_IDLE},
                {"client-timeout", required_argument, NULL, ARG_CLIENT_TIMEOUT},
                {"max-clients", required_argument, NULL, ARG_MAX_CLIENTS},
                {"no-strict-perms", no_argument, NULL, ARG_NO_STRICT},
                {"mountinfo", required_argument, NULL, ARG_MOUNTINFO},
                {"debug", no_argument, NULL, 'd'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {},
        };
        int c, bad = 0;

        *o = (struct options){.config = CFG_DEFAULT_PATH, .idle_exit_s = -1};
        while ((c = getopt_long(argc, argv, "c:l:dh", longopts, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        o->config = optarg;
                        break;
                case ARG_DB:
                        o->db = optarg;
                        break;
                case 'l':
                        if (o->n_listen == MAX_LISTEN) {
                                fprintf(stderr, "vhotplug-api: at most %d --listen options\n", MAX_LISTEN);
                                return -EINVAL;
                        }
                        o->listen[o->n_listen++] = optarg;
                        break;
                case ARG_IDLE:
                        bad |= parse_int(optarg, 86400, &o->idle_exit_s);
                        break;
                case ARG_CLIENT_TIMEOUT:
                        bad |= parse_int(optarg, 86400, &o->client_timeout_s);
                        break;
                case ARG_MAX_CLIENTS:
                        bad |= parse_int(optarg, 65536, &o->max_clients);
                        break;
                case ARG_NO_STRICT:
                        o->cfg_flags |= CFG_NO_STRICT_PERMS;
                        break;
                case ARG_MOUNTINFO:
                        o->mountinfo = optarg;
                        break;
                case 'd':
                        o->debug = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("vhotplug-api " VHP_VERSION "\n");
                        return 0;
                default:
                        fprintf(stderr, "Try 'vhotplug-api --help' for more information.\n");
                        return -EINVAL;
                }
                if (bad) {
                        fprintf(stderr, "vhotplug-api: '%s' is not a valid number here\n", optarg);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "vhotplug-api: unexpected argument '%s' (see --help)\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static void on_signal(int sig) {
        (void)sig;
        api_stop();
}

static void note(void *userdata, int level, const char *msg) {
        (void)userdata;
        log_full_errno(level, 0, "%s", msg);
}

/* One device moved (or not) by a request: a record with the helper's fields and MESSAGE_IDs, and
 * the request and who asked (vhotplug(7)). */
static void record(void *userdata, const char *request, const char *requested_by, const char *devpath,
                   const char *what, const struct xact_result *res) {
        const char *msgid;
        int level;
        const struct log_field fields[] = {
                {"DEVPATH", devpath},
                {"VHOTPLUG_REQUEST", request},
                {"VHOTPLUG_REQUESTED_BY", requested_by},
                {"VHOTPLUG_ACTION", xact_action_name(res->action)},
                {"VHOTPLUG_VM", res->vm},
                {"VHOTPLUG_KIND", dev_kind_name(res->decision.kind)},
                {"VHOTPLUG_OUTCOME", xact_outcome_name(res->outcome)},
                {"VHOTPLUG_REASON", res->decision.reason},
                {"VHOTPLUG_VMM_ID", res->vmm_id},
                {"VHOTPLUG_ERROR", res->error},
                {NULL},
        };

        (void)userdata;
        xact_log_class(res, &level, &msgid);
        log_event(level, msgid, fields, "%s by %s: %s %s%s%s [%s]%s%s", request, requested_by,
                  xact_action_name(res->action), what, res->vm[0] ? " -> " : "", res->vm,
                  xact_outcome_name(res->outcome), res->error[0] ? ": " : "", res->error);
}

/* The sockets: systemd's, else --listen, else general.api's. */
static int open_listeners(const struct options *o, const struct cfg *cfg, struct api_listener **ret,
                          size_t *ret_n, bool *ret_activated) {
        _cleanup_strv_ char **specs = NULL;
        _cleanup_free_ char *err = NULL;
        struct api_listener *l;
        size_t n = 0, want;
        int r;

        r = api_listeners_from_systemd(ret, ret_n, &err);
        if (r < 0)
                return log_error("%s", err), r;
        *ret_activated = r > 0;
        if (r > 0)
                return 0;
        if (o->n_listen == 0) {
                r = api_specs_from_config(&cfg->general.api, &specs);
                if (r < 0)
                        return log_error_errno(r, "Out of memory");
        }
        for (want = o->n_listen; specs && specs[want - o->n_listen]; want++) {
        }
        if (want == 0)
                return log_error(
                               "%s: general.api is not enabled or names no transport: nothing to listen on "
                               "(give --listen ADDR)",
                               o->config),
                       -EINVAL;
        l = calloc(want, sizeof(*l));
        if (!l)
                return log_error_errno(ENOMEM, "Out of memory");
        for (size_t i = 0; i < want; i++) {
                const char *spec = i < o->n_listen ? o->listen[i] : specs[i - o->n_listen];
                _cleanup_free_ char *warning = NULL;

                r = api_listener_open(spec, &cfg->general.api, &l[n], &warning, &err);
                if (warning)
                        log_warning("%s", warning);
                if (r < 0) {
                        log_error("%s", err);
                        for (size_t k = 0; k < n; k++)
                                close(l[k].fd);
                        free(l);
                        return r;
                }
                log_info("listening on %s", l[n].name);
                n++;
        }
        *ret = l;
        *ret_n = n;
        return 0;
}

static int run(int argc, char **argv) {
        struct options o;
        struct cfg *cfg = NULL;
        struct cfg_error cerr;
        struct api_listener *l = NULL;
        _cleanup_free_ char *err = NULL;
        struct sigaction sa = {.sa_handler = on_signal};
        struct rlimit nofile;
        size_t n = 0;
        bool activated = false;
        int r;

        r = parse_args(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : 0;
        log_setup("vhotplug-api", o.debug, false);
        r = cfg_load(o.config, o.cfg_flags, &cfg, &cerr);
        if (r < 0) {
                log_error("%s", cerr.msg);
                return EXIT_CONFIG;
        }
        for (size_t i = 0; i < cfg->n_warnings; i++)
                log_warning("%s", cfg->warnings[i]);
        r = open_listeners(&o, cfg, &l, &n, &activated);
        if (r < 0) {
                cfg_free(cfg);
                return EXIT_CONFIG;
        }
        /* Each connection holds a few descriptors (its socket, a udev monitor, an inotify watch, the
         * database's files while it acts): allow what the hard limit allows. */
        if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
                nofile.rlim_cur = nofile.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &nofile);
        }
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);

        struct api_opts ao = {
                .cfg = cfg,
                .db_path = o.db,
                .mountinfo = o.mountinfo,
                .no_strict_perms = o.cfg_flags & CFG_NO_STRICT_PERMS,
                .listeners = l,
                .n_listeners = n,
                .idle_exit_ms = (o.idle_exit_s >= 0 ? o.idle_exit_s * 1000
                                 : activated        ? API_IDLE_EXIT_MS
                                                    : 0),
                .client_timeout_ms = o.client_timeout_s * 1000,
                .max_clients = o.max_clients,
                .note = note,
                .record = record,
        };
        r = api_serve(&ao, &err);
        if (r < 0)
                log_error("%s", err);
        else
                log_debug("%s", activated ? "idle or stopped: exiting" : "stopped");
        for (size_t i = 0; i < n; i++) {
                /* Our own unix sockets go with us (systemd keeps its own). */
                if (!activated && l[i].family == AF_UNIX && strncmp(l[i].name, "unix:", 5) == 0)
                        (void)unlink(l[i].name + 5);
                close(l[i].fd);
        }
        free(l);
        if (r > 0)
                return 0; /* requests still under way use the configuration until the process ends */
        cfg_free(cfg);
        return r < 0 ? EXIT_CONFIG : 0;
}

int main(int argc, char **argv) {
        return run(argc, argv);
}
