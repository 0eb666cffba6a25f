/* vhotplug-helper: handles one udev event. All the work is in lib/event.c and lib/xact.c. */
#include <errno.h>
#include <getopt.h>
#include <libudev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup-types.h"
#include "config.h"
#include "event.h"
#include "json.h"
#include "log.h"
#include "util.h"

extern char **environ;

enum { EXIT_CONFIG = 1, EXIT_USAGE = 2, EXIT_REFUSED = 3 };

static void help(void) {
        printf("Usage: vhotplug-helper [OPTIONS] [ACTION DEVPATH]\n"
               "Attach or detach one device according to the vhotplug configuration.\n"
               "Without ACTION and DEVPATH the event is read from the environment (udev, systemd-run -E).\n\n"
               "  -c, --config FILE    configuration file (default " CFG_DEFAULT_PATH ")\n"
               "      --db FILE        state database (default: general.database, " CFG_DEFAULT_DATABASE ")\n"
               "  -n, --dry-run        decide only; touch neither the database nor any VM\n"
               "      --json           print the decision as one JSON object\n"
               "      --check-config   validate the configuration and exit\n"
               "      --no-strict-perms  accept a configuration or database not root's alone (tests)\n"
               "  -d, --debug          verbose logging\n"
               "  -h, --help           show this help\n"
               "      --version        show the version\n\n"
               "ACTION is add, remove, bind or change; DEVPATH is udev's /devices/... path (or /sys/devices/...).\n"
               "Exit status: 0 handled (attached, detached, ignored or deferred), 1 configuration or internal\n"
               "error, 2 usage error, 3 the VM refused the device.\n");
}

struct options {
        const char *config, *db, *mountinfo;
        bool dry_run, json, debug, check_config;
        unsigned cfg_flags;
        const char *action, *devpath;
};

static int parse_args(int argc, char **argv, struct options *o) {
        enum { ARG_DB = 0x100, ARG_JSON, ARG_CHECK, ARG_NO_STRICT, ARG_VERSION, ARG_MOUNTINFO };
        static const struct option longopts[] = {
                { "config", required_argument, NULL, 'c' },   { "db", required_argument, NULL, ARG_DB },
                { "dry-run", no_argument, NULL, 'n' },        { "json", no_argument, NULL, ARG_JSON },
                { "check-config", no_argument, NULL, ARG_CHECK }, { "no-strict-perms", no_argument, NULL, ARG_NO_STRICT },
                { "debug", no_argument, NULL, 'd' },          { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION }, { "mountinfo", required_argument, NULL, ARG_MOUNTINFO },
                {},
        };
        int c;

        *o = (struct options){ .config = CFG_DEFAULT_PATH };
        while ((c = getopt_long(argc, argv, "c:ndh", longopts, NULL)) >= 0) {
                switch (c) {
                case 'c': o->config = optarg; break;
                case ARG_DB: o->db = optarg; break;
                case 'n': o->dry_run = true; break;
                case ARG_JSON: o->json = true; break;
                case ARG_CHECK: o->check_config = true; break;
                case ARG_NO_STRICT: o->cfg_flags |= CFG_NO_STRICT_PERMS; break;
                case ARG_MOUNTINFO: o->mountinfo = optarg; break;
                case 'd': o->debug = true; break;
                case 'h': help(); return 0;
                case ARG_VERSION: printf("vhotplug-helper " VHP_VERSION "\n"); return 0;
                default:
                        fprintf(stderr, "Try 'vhotplug-helper --help' for more information.\n");
                        return -EINVAL;
                }
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

/* The summary on stdout: one line (or one JSON object) per event, untrusted words escaped. */
static void print_result(const struct options *o, const struct event *ev, const struct xact_result *res) {
        char what[160], id[VMM_ID_MAX + 8], line[2048], safe[4096];
        if (o->json) {
                _cleanup_cjson_ cJSON *j = NULL;
                _cleanup_free_ char *s = NULL;
                if (event_result_to_json(ev, res, &j) == 0 && (s = json_print(j)))
                        printf("%s\n", s);
                return;
        }
        dev_describe(ev->dev, what, sizeof(what));
        format_id(res, id, sizeof(id));
        if (res->action == XACT_IGNORE && res->outcome != XACT_FAILED)
                snprintf(line, sizeof(line), "%s: ignore (%s)", what, res->decision.reason);
        else
                snprintf(line, sizeof(line), "%s: %s -> %s%s%s [%s] (%s)%s%s", what, xact_action_name(res->action),
                         res->vm, id[0] ? " as " : "", id, xact_outcome_name(res->outcome), res->decision.reason,
                         res->error[0] ? ": " : "", res->error);
        printf("%s\n", str_escape(line, safe, sizeof(safe)));
}

/* Logs the outcome once, naming device and VM. */
static void log_result(const struct event *ev, const struct xact_result *res) {
        char what[160], id[VMM_ID_MAX + 8];
        dev_describe(ev->dev, what, sizeof(what));
        format_id(res, id, sizeof(id));
        switch (res->outcome) {
        case XACT_DONE:
                log_info("%s -> %s: %s%s%s", what, res->vm, res->action == XACT_ATTACH ? "attached" : "detached",
                         id[0] ? " as " : "", id);
                break;
        case XACT_PENDING:
                log_notice("%s -> %s: deferred (%s)", what, res->vm, res->error);
                break;
        case XACT_FAILED:
                log_error("%s%s%s: %s", what, res->vm[0] ? " -> " : "", res->vm, res->error);
                break;
        case XACT_STALE:
        case XACT_ALREADY:
        case XACT_KEPT_DETACHED:
        case XACT_SUSPENDED:
                log_info("%s: %s%s%s", what, xact_outcome_name(res->outcome), res->vm[0] ? " in " : "", res->vm);
                break;
        default:
                log_debug("%s: %s", what, res->decision.reason);
                break;
        }
}

static int run(int argc, char **argv) {
        struct options o;
        struct cfg *cfg = NULL;
        struct cfg_error cerr;
        struct udev *udev = NULL;
        struct event ev = { 0 };
        struct xact_result res;
        char err[512];
        int r;

        r = parse_args(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : 0;
        log_setup("vhotplug-helper", o.debug, false);

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

        udev = udev_new();
        if (!udev) {
                cfg_free(cfg);
                return log_error_errno(ENOMEM, "Failed to initialize libudev: %m"), EXIT_CONFIG;
        }
        r = event_new(udev, o.action, o.devpath, environ, &ev, err, sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                r = o.action || r == -EINVAL ? EXIT_USAGE : EXIT_CONFIG;
                goto out;
        }
        struct xact_ctx ctx = {
                .cfg = cfg, .db_path = o.db, .mountinfo = o.mountinfo, .dry_run = o.dry_run,
                .no_strict_perms = o.cfg_flags & CFG_NO_STRICT_PERMS,
        };
        r = event_handle(&ctx, &ev, &res);
        if (res.notice[0])
                log_warning("%s", res.notice);
        print_result(&o, &ev, &res);
        log_result(&ev, &res);
        if (r < 0)
                r = EXIT_CONFIG;
        else
                r = res.outcome == XACT_FAILED ? EXIT_REFUSED : 0;
out:
        event_clear(&ev);
        udev_unref(udev);
        cfg_free(cfg);
        return r;
}

int main(int argc, char **argv) {
        return run(argc, argv);
}
