/* vhotplug-reconcile: repairs drift between rules, database and running VMs
 * All the work is in lib/reconcile.c. */
#include <errno.h>
#include <getopt.h>
#include <libudev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup-types.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "reconcile.h"

enum { EXIT_ERROR = 1, EXIT_USAGE = 2, EXIT_FAILED = 3 };
#define MAX_VMS 64

static void help(void) {
        printf("Usage: vhotplug-reconcile [OPTIONS]\n"
               "Attach present devices the rules give to running VMs, detach what left the host, and "
               "repair\n"
               "records that disagree with the VMs.\n\n"
               "  -c, --config FILE    configuration file (default " CFG_DEFAULT_PATH ")\n"
               "      --db FILE        state database (default: general.database)\n"
               "      --vm NAME        only this VM (repeatable; used by a VM's start hook)\n"
               "  -n, --dry-run        print the plan; change nothing\n"
               "      --json           print the plan and results as JSON\n"
               "      --no-strict-perms  accept a configuration or database not root's alone (tests)\n"
               "  -d, --debug          verbose logging\n"
               "  -h, --help           show this help\n"
               "      --version        show the version\n\n"
               "Exit status: 0 state agrees (VMs not running are reported and skipped), 1 configuration or\n"
               "database error, 2 usage error, 3 some action failed.\n");
}

struct options {
        const char *config, *db, *mountinfo;
        char *vms[MAX_VMS];
        size_t n_vms;
        bool dry_run, json, debug;
        unsigned cfg_flags;
};

static int parse_args(int argc, char **argv, struct options *o) {
        enum { ARG_DB = 0x100, ARG_VM, ARG_JSON, ARG_NO_STRICT, ARG_VERSION, ARG_MOUNTINFO };
        static const struct option longopts[] = {
                {"config", required_argument, NULL, 'c'},
                {"db", required_argument, NULL, ARG_DB},
                {"vm", required_argument, NULL, ARG_VM},
                {"dry-run", no_argument, NULL, 'n'},
                {"json", no_argument, NULL, ARG_JSON},
                {"no-strict-perms", no_argument, NULL, ARG_NO_STRICT},
                {"debug", no_argument, NULL, 'd'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, ARG_VERSION},
                {"mountinfo", required_argument, NULL, ARG_MOUNTINFO},
                {},
        };
        int c;

        *o = (struct options){.config = CFG_DEFAULT_PATH};
        while ((c = getopt_long(argc, argv, "c:ndh", longopts, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        o->config = optarg;
                        break;
                case ARG_DB:
                        o->db = optarg;
                        break;
                case ARG_VM:
                        if (o->n_vms == MAX_VMS) {
                                fprintf(stderr, "vhotplug-reconcile: too many --vm options\n");
                                return -EINVAL;
                        }
                        o->vms[o->n_vms++] = optarg;
                        break;
                case 'n':
                        o->dry_run = true;
                        break;
                case ARG_JSON:
                        o->json = true;
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
                        printf("vhotplug-reconcile " VHP_VERSION "\n");
                        return 0;
                default:
                        fprintf(stderr, "Try 'vhotplug-reconcile --help' for more information.\n");
                        return -EINVAL;
                }
        }
        if (optind != argc) {
                fprintf(stderr, "vhotplug-reconcile: unexpected argument '%s' (see --help)\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static void print_plan(const struct options *o, const struct recon_plan *plan) {
        size_t failed = 0, actions = 0, down = 0;
        if (o->json) {
                _cleanup_cjson_ cJSON *j = NULL;
                _cleanup_free_ char *s = NULL;
                if (recon_plan_to_json(plan, o->dry_run, &j) == 0 && (s = json_print(j)))
                        printf("%s\n", s);
                return;
        }
        for (size_t i = 0; i < plan->n; i++) {
                const struct recon_item *it = &plan->items[i];
                char id[VMM_ID_MAX + 8] = "", line[2048], safe[4096];
                if (it->id[0] && strcmp(it->id, it->what) != 0)
                        snprintf(id, sizeof(id), " as %s", it->id);
                else if (!it->id[0] && it->port >= 0 && it->op != RECON_FOREIGN)
                        snprintf(id, sizeof(id), " as port %d", it->port);
                failed += it->failed;
                /* A VM not running and a device someone else attached are reported, not acted on. */
                down += it->op == RECON_VM_DOWN;
                actions += it->op != RECON_VM_DOWN && it->op != RECON_FOREIGN;
                snprintf(line, sizeof(line), "%-8s %s: %s%s (%s)%s%s%s", recon_op_name(it->op),
                         it->vm[0] ? it->vm : "host", it->what, id, it->why,
                         it->failed ? " FAILED"
                         : it->done ? " done"
                                    : "",
                         it->error[0] ? ": " : "", it->error);
                printf("%s\n", str_escape(line, safe, sizeof(safe)));
        }
        printf("%zu devices, %zu actions%s, %zu failed", plan->n_devices, actions,
               o->dry_run ? " planned (dry run)" : "", failed);
        if (down)
                printf(", %zu VM%s not running", down, down == 1 ? "" : "s");
        printf("\n");
}

/* The journal's MESSAGE_ID for an item that was acted on or skipped (vhotplug(7)); NULL: none. */
static const char *item_msgid(const struct recon_item *it) {
        if (it->failed)
                return LOG_MSGID_REFUSED;
        switch (it->op) {
        case RECON_ATTACH:
        case RECON_REATTACH:
        case RECON_ADOPT:
                return LOG_MSGID_ATTACH;
        case RECON_DETACH:
        case RECON_REMOVE:
        case RECON_CLOSE:
                return LOG_MSGID_DETACH;
        case RECON_VM_DOWN:
                return LOG_MSGID_DEFERRED;
        default:
                return NULL;
        }
}

/* One record per item acted on (done or failed) and per VM skipped, with the helper's fields:
 * VHOTPLUG_ACTION is the reconcile action (attach, reattach, adopt, detach, ...). */
static void log_plan(const struct recon_plan *plan) {
        for (size_t i = 0; i < plan->n; i++) {
                const struct recon_item *it = &plan->items[i];
                char port[16] = "";

                if (!it->failed && !it->done && it->op != RECON_VM_DOWN)
                        continue;
                if (!it->id[0] && it->port >= 0)
                        snprintf(port, sizeof(port), "%d", it->port);
                const struct log_field fields[] = {
                        {"DEVPATH", it->devpath},
                        {"VHOTPLUG_ACTION", recon_op_name(it->op)},
                        {"VHOTPLUG_VM", it->vm},
                        {"VHOTPLUG_OUTCOME", it->failed ? "failed" : it->done ? "done" : "skipped"},
                        {"VHOTPLUG_REASON", it->why},
                        {"VHOTPLUG_VMM_ID", it->id[0] ? it->id : port},
                        {"VHOTPLUG_ERROR", it->error},
                        {NULL},
                };
                if (it->failed)
                        log_event(LOG_ERR, item_msgid(it), fields, "%s %s -> %s: %s", recon_op_name(it->op),
                                  it->what, it->vm, it->error[0] ? it->error : it->why);
                else if (it->done)
                        log_event(LOG_INFO, item_msgid(it), fields, "%s %s -> %s: %s", recon_op_name(it->op),
                                  it->what, it->vm, it->why);
                else
                        log_event(LOG_NOTICE, item_msgid(it), fields, "VM %s not running, skipped: %s",
                                  it->vm, it->why);
        }
}

static int run(int argc, char **argv) {
        struct options o;
        struct cfg *cfg = NULL;
        struct cfg_error cerr;
        struct recon_plan plan = {0};
        char err[512];
        int r, failed;

        r = parse_args(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : 0;
        log_setup("vhotplug-reconcile", o.debug, false);
        r = cfg_load(o.config, o.cfg_flags, &cfg, &cerr);
        if (r < 0) {
                log_error("%s", cerr.msg);
                return EXIT_ERROR;
        }
        for (size_t i = 0; i < cfg->n_warnings; i++)
                log_warning("%s", cfg->warnings[i]);

        struct recon_opts ro = {
                .ctx = {.cfg = cfg,
                        .udev = udev_new(),
                        .db_path = o.db,
                        .mountinfo = o.mountinfo,
                        .dry_run = o.dry_run,
                        .no_strict_perms = o.cfg_flags & CFG_NO_STRICT_PERMS},
                .vms = o.vms,
                .n_vms = o.n_vms,
        };
        if (!ro.ctx.udev) {
                cfg_free(cfg);
                return log_error_errno(ENOMEM, "Failed to initialize libudev: %m"), EXIT_ERROR;
        }
        r = recon_plan(&ro, &plan, err, sizeof(err));
        if (r < 0) {
                log_error("%s", err);
                r = r == -ENOENT ? EXIT_USAGE : EXIT_ERROR;
                goto out;
        }
        if (plan.notice[0])
                log_warning("%s", plan.notice);
        if (plan.info[0])
                log_info("%s", plan.info);
        failed = recon_apply(&ro, &plan);
        print_plan(&o, &plan);
        log_plan(&plan);
        r = failed > 0 ? EXIT_FAILED : 0;
out:
        recon_plan_clear(&plan);
        udev_unref(ro.ctx.udev);
        cfg_free(cfg);
        return r;
}

int main(int argc, char **argv) {
        return run(argc, argv);
}
