/* vhotplugctl: the administrator's and user's command line for vhotplug, a client of vhotplug-api's
 * protocol (lib/client.c). The older vhotplugcli's commands and options work unchanged; status,
 * why and history are new. Output is a table by default, the server's JSON with --json. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "client.h"
#include "config.h"
#include "json.h"
#include "util.h"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2 };
#define DEFAULT_TIMEOUT_S 60 /* an attach may wait for a slow VM */
#define VMM_ARGS_WAIT_S 30   /* vmm args waits this long for the API to come up */
#define RECONNECT_S 3        /* listen: pause before reconnecting */
#define CELL_MAX 48          /* characters of a table cell shown */

struct global {
        const char *transport, *path, *host, *config;
        unsigned net_port, cid;
        bool json, debug;
        int timeout_s;
};

static void help(void) {
        printf("Usage: vhotplugctl [OPTIONS] COMMAND ...\n"
               "Control vhotplug through vhotplug-api: list devices, attach them to VMs, detach them.\n\n"
               "Commands:\n"
               "  usb list [--connected|--disconnected] [--tag TAG] [--short]\n"
               "  usb attach (--devnode PATH | --bus N --port N | --vid ID --pid ID | --tag TAG) [--vm VM]\n"
               "  usb detach (--devnode PATH | --bus N --port N | --vid ID --pid ID | --tag TAG)\n"
               "  usb suspend|resume [--vm VM]\n"
               "  pci list [--connected|--disconnected] [--tag TAG] [--short]\n"
               "  pci attach (--address ADDR | --vid ID --did ID | --tag TAG) [--vm VM]\n"
               "  pci detach (--address ADDR | --vid ID --did ID | --tag TAG)\n"
               "  pci suspend|resume [--vm VM]\n"
               "  listen                      print events as they happen\n"
               "  vmm args --vm VM [--qemu-bus-prefix P] [--qemu-bus-start-index N]\n"
               "  status [VM]                 what each VM has, asked from the VMs\n"
               "  why DEVICE                  the decision, the choice and the last history of a device\n"
               "  history [DEVICE] [-n N]     the newest history rows\n\n"
               "Options (before the command):\n"
               "  -t, --transport unix|vsock|tcp   how to reach vhotplug-api (default unix)\n"
               "  -u, --path PATH        unix socket (default general.api.unixSocket, "
               "else " CFG_DEFAULT_API_SOCKET ")\n"
               "  -s, --host HOST        TCP host (default 127.0.0.1)\n"
               "  -p, --net-port N       TCP or vsock port (default 2000)\n"
               "  -c, --cid N            vsock CID (default 2, the host)\n"
               "      --config FILE      where the default unix socket is read from "
               "(default " CFG_DEFAULT_PATH ")\n"
               "      --json             print the server's JSON\n"
               "      --timeout SEC      how long to wait for an answer (default 60)\n"
               "  -d, --debug            show what is sent and received\n"
               "  -h, --help             show this help\n"
               "      --version          show the version\n\n"
               "DEVICE is a device node (/dev/bus/usb/001/005), a USB name (1-3.2), a PCI address or a\n"
               "sysfs path. Exit status: 0 done, 1 the request failed or the API cannot be reached,\n"
               "2 usage error.\n");
}

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage(const char *fmt, ...) {
        va_list ap;

        fputs("vhotplugctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\nTry 'vhotplugctl --help' for more information.\n", stderr);
        return -EINVAL;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
        char msg[2048], safe[4096];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        fprintf(stderr, "vhotplugctl: %s\n", str_escape(msg, safe, sizeof(safe)));
        return -EIO;
}

static int parse_uint(const char *s, unsigned max, unsigned *ret) {
        uint64_t v;

        if (parse_u64(s, max, &v) < 0)
                return -EINVAL;
        *ret = (unsigned)v;
        return 0;
}

/* ---- talking to the server ---- */

/* The unix socket: --path, else the configuration's, else the default. */
static char *default_socket(const struct global *g) {
        struct cfg *cfg = NULL;
        struct cfg_error err;
        char *path = NULL;

        /* Only the path is wanted: whoever may read the file may learn it. */
        if (cfg_load(g->config, CFG_NO_STRICT_PERMS, &cfg, &err) == 0) {
                if (cfg->general.api.unix_socket)
                        path = strdup(cfg->general.api.unix_socket);
                cfg_free(cfg);
        }
        return path ? path : strdup(CFG_DEFAULT_API_SOCKET);
}

static int connect_api(const struct global *g, struct client **ret, char **ret_error) {
        _cleanup_free_ char *spec = NULL, *path = NULL;
        const char *t = g->transport ? g->transport : "unix";

        if (strcmp(t, "unix") == 0) {
                if (!g->path && !(path = default_socket(g)))
                        return -ENOMEM;
                if (asprintf(&spec, "unix:%s", g->path ? g->path : path) < 0)
                        return -ENOMEM;
        } else if (strcmp(t, "vsock") == 0) {
                if (asprintf(&spec, "vsock:%u:%u", g->cid, g->net_port) < 0)
                        return -ENOMEM;
        } else {
                if (asprintf(&spec, strchr(g->host, ':') ? "tcp:[%s]:%u" : "tcp:%s:%u", g->host,
                             g->net_port) < 0)
                        return -ENOMEM;
        }
        if (g->debug)
                fprintf(stderr, "Connecting to %s\n", spec);
        return client_connect(spec, 5000, ret, ret_error);
}

static void debug_json(const struct global *g, const char *what, cJSON *o) {
        _cleanup_free_ char *s = NULL;

        if (!g->debug)
                return;
        s = json_print(o);
        fprintf(stderr, "%s: %s\n", what, s ? s : "?");
}

/* Sends req and returns the reply; a failed reply is reported as "WHAT: error". */
static int request(const struct global *g, cJSON *req, const char *what, cJSON **ret) {
        _cleanup_free_ char *err = NULL;
        struct client *c = NULL;
        const cJSON *result, *error;
        cJSON *reply = NULL;
        int r;

        r = connect_api(g, &c, &err);
        debug_json(g, "Sending", req);
        if (r >= 0)
                r = client_request(c, req, g->timeout_s * 1000, &reply, &err);
        client_free(c);
        if (r < 0)
                return fail("%s: %s", what, err ? err : strerror(-r));
        debug_json(g, "Received", reply);
        result = cJSON_GetObjectItemCaseSensitive(reply, "result");
        if (cJSON_IsString(result) && strcmp(result->valuestring, "failed") == 0) {
                error = cJSON_GetObjectItemCaseSensitive(reply, "error");
                r = fail("%s: %s", what, cJSON_IsString(error) ? error->valuestring : "failed");
                cJSON_Delete(reply);
                return r;
        }
        *ret = reply;
        return 0;
}

static void print_json(const cJSON *o) {
        _cleanup_free_ char *s = json_print((cJSON *)o);
        printf("%s\n", s ? s : "null");
}

/* ---- tables ---- */

struct table {
        size_t ncols;
        const char *head[10];
        char **cells; /* rows * ncols, escaped */
        size_t nrows, cap;
};

static const char *jstr(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsString(v) ? v->valuestring : NULL;
}

static char *jtext(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        char *s = NULL;

        if (cJSON_IsString(v))
                return strdup(v->valuestring);
        if (cJSON_IsNumber(v) && asprintf(&s, "%.0f", v->valuedouble) >= 0)
                return s;
        if (cJSON_IsArray(v)) {
                size_t n = 0, cap = 256;
                const cJSON *it;
                s = calloc(1, cap);
                cJSON_ArrayForEach(it,
                                   v) if (s && cJSON_IsString(it) && n + strlen(it->valuestring) + 3 < cap)
                        n += (size_t)snprintf(s + n, cap - n, "%s%s", n ? "," : "", it->valuestring);
                return s;
        }
        return NULL;
}

/* Adds a row of the table's width; values are untrusted (device strings): escaped, cut. NULL: "-". */
static void table_row(struct table *t, ...) {
        va_list ap;

        if (t->nrows == t->cap) {
                size_t cap = t->cap ? t->cap * 2 : 16;
                char **c = reallocarray(t->cells, cap * t->ncols, sizeof(char *));
                if (!c)
                        return;
                t->cells = c;
                t->cap = cap;
        }
        va_start(ap, t);
        for (size_t i = 0; i < t->ncols; i++) {
                char *v = va_arg(ap, char *), safe[4 * CELL_MAX + 8];
                str_escape(v && *v ? v : "-", safe, sizeof(safe));
                if (strlen(safe) > CELL_MAX) {
                        size_t cut = CELL_MAX - 3;
                        while (cut > 0 && ((unsigned char)safe[cut] & 0xc0) == 0x80)
                                cut--;
                        strcpy(safe + cut, "...");
                }
                t->cells[t->nrows * t->ncols + i] = strdup(safe);
                free(v);
        }
        va_end(ap);
        t->nrows++;
}

static size_t width(const char *s) {
        size_t w = 0;
        for (; *s; s++)
                w += ((unsigned char)*s & 0xc0) != 0x80;
        return w;
}

/* Prints the table (nothing at all when it has no rows: scripts test for empty output). */
static void table_print(struct table *t, bool header) {
        size_t w[10] = {0};

        for (size_t r = 0; r < t->nrows; r++)
                for (size_t i = 0; i < t->ncols; i++) {
                        size_t cw = width(t->cells[r * t->ncols + i] ?: "");
                        w[i] = MIN(w[i] > cw ? w[i] : cw, (size_t)CELL_MAX);
                }
        for (size_t i = 0; header && t->nrows && i < t->ncols; i++)
                w[i] = w[i] > strlen(t->head[i]) ? w[i] : strlen(t->head[i]);
        for (size_t r = 0; header && t->nrows && r < 1; r++)
                for (size_t i = 0; i < t->ncols; i++)
                        printf("%-*s%s", i + 1 < t->ncols ? (int)w[i] : 0, t->head[i],
                               i + 1 < t->ncols ? "  " : "\n");
        for (size_t r = 0; r < t->nrows; r++)
                for (size_t i = 0; i < t->ncols; i++) {
                        const char *s = t->cells[r * t->ncols + i] ?: "";
                        printf("%s", s);
                        if (i + 1 < t->ncols)
                                printf("%*s", (int)(w[i] - width(s) + 2), "");
                        else
                                printf("\n");
                }
        for (size_t i = 0; i < t->nrows * t->ncols; i++)
                free(t->cells[i]);
        free(t->cells);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
        va_list ap;
        char *s = NULL;

        va_start(ap, f);
        if (vasprintf(&s, f, ap) < 0)
                s = NULL;
        va_end(ap);
        return s;
}

static char *ids(const cJSON *d, const char *k1, const char *k2) {
        const char *a = jstr(d, k1), *b = jstr(d, k2);
        return a || b ? fmt("%s:%s", a ? a : "?", b ? b : "?") : NULL;
}

static char *names(const cJSON *d, const char *k1, const char *k2) {
        const char *a = jstr(d, k1), *b = jstr(d, k2);
        return a || b ? fmt("%s%s%s", a ? a : "", a && b ? " " : "", b ? b : "") : NULL;
}

/* ---- usb and pci ---- */

static int print_list(const struct global *g, cJSON *reply, bool usb, bool shortform) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(reply, usb ? "usb_devices" : "pci_devices"), *d;
        struct table t = {.ncols = shortform ? 3 : 7};

        if (g->json) {
                print_json(list);
                return 0;
        }
        if (usb) {
                const char *h[] = {"DEVICE", "ID", "NAME", "SERIAL", "STATE", "VM", "ALLOWED"};
                memcpy(t.head, h, sizeof(h));
        } else {
                const char *h[] = {"ADDRESS", "ID", "NAME", "DRIVER", "STATE", "VM", "ALLOWED"};
                memcpy(t.head, h, sizeof(h));
        }
        cJSON_ArrayForEach(d, list) {
                if (shortform)
                        table_row(&t, jtext(d, usb ? "device_node" : "address"),
                                  usb ? ids(d, "vid", "pid") : ids(d, "vid", "did"),
                                  usb ? names(d, "vendor_name", "product_name")
                                      : names(d, "vendor_name", "device_name"));
                else
                        table_row(&t, jtext(d, usb ? "device_node" : "address"),
                                  usb ? ids(d, "vid", "pid") : ids(d, "vid", "did"),
                                  usb ? names(d, "vendor_name", "product_name")
                                      : names(d, "vendor_name", "device_name"),
                                  jtext(d, usb ? "serial" : "driver"), jtext(d, "state"), jtext(d, "vm"),
                                  jtext(d, "allowed_vms"));
        }
        table_print(&t, !shortform);
        return 0;
}

static void print_results(const struct global *g, cJSON *reply, const char *verb) {
        const cJSON *res = cJSON_GetObjectItemCaseSensitive(reply, "results"), *it;

        if (g->json) {
                print_json(reply);
                return;
        }
        cJSON_ArrayForEach(it, res) {
                char line[1024], safe[2048];
                const char *vm = jstr(it, "vm"), *outcome = jstr(it, "outcome"), *err = jstr(it, "error"),
                           *note = jstr(it, "note");
                snprintf(line, sizeof(line), "%s %s: %s%s%s%s%s%s%s", jstr(it, "device") ?: "?",
                         jstr(it, "device_node") ?: jstr(it, "address") ?: "",
                         outcome ? outcome : verb, vm ? " " : "", vm ? vm : "", err ? ": " : "", err ? err : "",
                         note ? " (" : "", note ? note : "");
                if (note)
                        strncat(line, ")", sizeof(line) - strlen(line) - 1);
                printf("%s\n", str_escape(line, safe, sizeof(safe)));
        }
}

static int cmd_device(const struct global *g, bool usb, int argc, char **argv) {
        enum {
                O_DEVNODE = 0x100,
                O_BUS,
                O_PORT,
                O_VID,
                O_PID,
                O_DID,
                O_ADDRESS,
                O_VM,
                O_TAG,
                O_CONNECTED,
                O_DISCONNECTED,
                O_SHORT,
                O_JSON
        };
        static const struct option longopts[] = {
                {"devnode", required_argument, NULL, O_DEVNODE},
                {"bus", required_argument, NULL, O_BUS},
                {"port", required_argument, NULL, O_PORT},
                {"vid", required_argument, NULL, O_VID},
                {"pid", required_argument, NULL, O_PID},
                {"did", required_argument, NULL, O_DID},
                {"address", required_argument, NULL, O_ADDRESS},
                {"vm", required_argument, NULL, O_VM},
                {"tag", required_argument, NULL, O_TAG},
                {"connected", no_argument, NULL, O_CONNECTED},
                {"disconnected", no_argument, NULL, O_DISCONNECTED},
                {"short", no_argument, NULL, O_SHORT},
                {"json", no_argument, NULL, O_JSON},
                {},
        };
        const char *sub = argc > 1 ? argv[1] : NULL, *devnode = NULL, *vid = NULL, *pid = NULL, *did = NULL,
                   *address = NULL, *vm = NULL, *tag = NULL;
        unsigned bus = 0, port = 0;
        int connected = -1, c;
        bool shortform = false;
        struct global gg = *g;
        _cleanup_cjson_ cJSON *req = cJSON_CreateObject(), *reply = NULL;
        char action[32], what[64];
        const char *kw = usb ? "USB" : "PCI";
        int r;

        if (!sub)
                return usage("%s: expected list, attach, detach, suspend or resume", usb ? "usb" : "pci");
        if (!req)
                return -ENOMEM;
        /* The options follow "usb SUB": getopt sees "SUB OPTIONS..." as its program and arguments. */
        optind = 0;
        while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) >= 0) {
                switch (c) {
                case O_DEVNODE:
                        devnode = optarg;
                        break;
                case O_BUS:
                        if (parse_uint(optarg, 65535, &bus) < 0)
                                return usage("--bus: expected a number, got '%s'", optarg);
                        break;
                case O_PORT:
                        if (parse_uint(optarg, 255, &port) < 0)
                                return usage("--port: expected a number, got '%s'", optarg);
                        break;
                case O_VID:
                        vid = optarg;
                        break;
                case O_PID:
                        pid = optarg;
                        break;
                case O_DID:
                        did = optarg;
                        break;
                case O_ADDRESS:
                        address = optarg;
                        break;
                case O_VM:
                        vm = optarg;
                        break;
                case O_TAG:
                        tag = optarg;
                        break;
                case O_CONNECTED:
                case O_DISCONNECTED:
                        if (connected >= 0 && connected != (c == O_CONNECTED))
                                return usage("--connected and --disconnected exclude each other");
                        connected = c == O_CONNECTED;
                        break;
                case O_SHORT:
                        shortform = true;
                        break;
                case O_JSON:
                        gg.json = true;
                        break;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc - 1)
                return usage("unexpected argument '%s'", argv[optind + 1]);
        snprintf(action, sizeof(action), "%s_%s", usb ? "usb" : "pci", sub);

        if (strcmp(sub, "list") == 0) {
                cJSON_AddStringToObject(req, "action", action);
                if (connected < 0)
                        cJSON_AddNullToObject(req, "disconnected");
                else
                        cJSON_AddBoolToObject(req, "disconnected", !connected);
                if (tag)
                        cJSON_AddStringToObject(req, "tag", tag);
                else
                        cJSON_AddNullToObject(req, "tag");
                snprintf(what, sizeof(what), "Failed to get %s list", kw);
                r = request(&gg, req, what, &reply);
                return r < 0 ? r : print_list(&gg, reply, usb, shortform);
        }
        if (strcmp(sub, "suspend") == 0 || strcmp(sub, "resume") == 0) {
                cJSON_AddStringToObject(req, "action", action);
                if (vm)
                        cJSON_AddStringToObject(req, "vm", vm);
                else
                        cJSON_AddNullToObject(req, "vm");
                snprintf(what, sizeof(what), "Failed to %s %s", sub, kw);
                r = request(&gg, req, what, &reply);
                if (r >= 0)
                        print_results(&gg, reply, sub);
                return r;
        }
        if (strcmp(sub, "attach") != 0 && strcmp(sub, "detach") != 0)
                return usage("%s: unknown command '%s' (expected list, attach, detach, suspend or resume)",
                             usb ? "usb" : "pci", sub);
        cJSON_AddStringToObject(req, "action", action);
        /* The older client's order: node (address), bus and port, tag, ids. */
        if (usb && devnode)
                cJSON_AddStringToObject(req, "device_node", devnode);
        else if (!usb && address)
                cJSON_AddStringToObject(req, "address", address);
        else if (usb && bus && port) {
                cJSON_AddNumberToObject(req, "bus", bus);
                cJSON_AddNumberToObject(req, "port", port);
        } else if (tag)
                cJSON_AddStringToObject(req, "tag", tag);
        else if (vid && (usb ? pid : did)) {
                cJSON_AddStringToObject(req, "vid", vid);
                cJSON_AddStringToObject(req, usb ? "pid" : "did", usb ? pid : did);
        } else
                return usage(usb ? "You must specify either --devnode or --bus and --port or --vid and "
                                   "--pid or --tag"
                                 : "You must specify either --address or --vid and --did or --tag");
        if (strcmp(sub, "attach") == 0 && !tag) {
                if (vm)
                        cJSON_AddStringToObject(req, "vm", vm);
                else
                        cJSON_AddNullToObject(req, "vm");
        } else if (vm && tag) {
                return usage("--vm cannot go with --tag: each device goes to its own VM");
        }
        snprintf(what, sizeof(what), "Failed to %s %s", sub, kw);
        r = request(&gg, req, what, &reply);
        if (r >= 0)
                print_results(&gg, reply, sub);
        return r;
}

/* ---- listen ---- */

static void print_event(const struct global *g, cJSON *e) {
        const char *ev = jstr(e, "event");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "usb_device");
        char line[1024], safe[2048];
        _cleanup_free_ char *id = NULL, *name = NULL, *allowed = NULL;

        if (g->json || !ev) {
                print_json(e);
                fflush(stdout);
                return;
        }
        if (d) {
                id = ids(d, "vid", "pid");
                name = names(d, "vendor_name", "product_name");
        } else {
                d = cJSON_GetObjectItemCaseSensitive(e, "pci_device");
                id = ids(d, "vid", "did");
                name = names(d, "vendor_name", "device_name");
        }
        allowed = jtext(e, "allowed_vms");
        snprintf(line, sizeof(line), "%-16s %s %s%s%s%s%s%s%s", ev, jstr(d, "device_node") ?: jstr(d, "address") ?: "?",
                 id ? id : "", name ? " " : "", name ? name : "", jstr(e, "vm") ? " vm=" : "", jstr(e, "vm") ?: "",
                 allowed ? " allowed=" : "", allowed ? allowed : "");
        printf("%s\n", str_escape(line, safe, sizeof(safe)));
        fflush(stdout);
}

static int cmd_listen(const struct global *g, int argc, char **argv) {
        bool connected_once = false;

        if (argc > 1 && strcmp(argv[1], "--json") != 0)
                return usage("listen: unexpected argument '%s'", argv[1]);
        for (;;) {
                _cleanup_free_ char *err = NULL;
                _cleanup_cjson_ cJSON *req = cJSON_CreateObject(), *reply = NULL;
                struct client *c = NULL;
                int r;

                if (!req)
                        return -ENOMEM;
                cJSON_AddStringToObject(req, "action", "enable_notifications");
                r = connect_api(g, &c, &err);
                if (r >= 0)
                        r = client_request(c, req, g->timeout_s * 1000, &reply, &err);
                if (r >= 0 && strcmp(jstr(reply, "result") ?: "", "ok") != 0) {
                        client_free(c);
                        return fail("Failed to enable notifications: %s", jstr(reply, "error") ?: "failed");
                }
                if (r < 0 && !connected_once) {
                        client_free(c);
                        return fail("%s", err ? err : strerror(-r));
                }
                if (r >= 0) {
                        connected_once = true;
                        fprintf(stderr, "Listening for notifications\n");
                }
                while (r >= 0) {
                        cJSON *e = NULL;
                        r = client_read(c, -1, &e, &err);
                        if (r >= 0)
                                print_event(g, e);
                        cJSON_Delete(e);
                }
                client_free(c);
                fprintf(stderr, "vhotplugctl: notification listener: %s; reconnecting in %d s\n",
                        err ? err : strerror(-r), RECONNECT_S);
                sleep(RECONNECT_S);
        }
}

/* ---- vmm args ---- */

static int cmd_vmm(const struct global *g, int argc, char **argv) {
        enum { O_VM = 0x100, O_PREFIX, O_INDEX };
        static const struct option longopts[] = {
                {"vm", required_argument, NULL, O_VM},
                {"qemu-bus-prefix", required_argument, NULL, O_PREFIX},
                {"qemu-bus-start-index", required_argument, NULL, O_INDEX},
                {},
        };
        const char *vm = NULL, *prefix = NULL;
        unsigned index = 0;
        bool has_index = false;
        _cleanup_cjson_ cJSON *req = cJSON_CreateObject(), *reply = NULL;
        const cJSON *args, *a;
        int64_t deadline = now_ms() + VMM_ARGS_WAIT_S * 1000;
        bool first = true;
        int c, r;

        if (argc < 2 || strcmp(argv[1], "args") != 0)
                return usage("vmm: expected 'args'");
        optind = 0;
        while ((c = getopt_long(argc - 1, argv + 1, "", longopts, NULL)) >= 0) {
                switch (c) {
                case O_VM:
                        vm = optarg;
                        break;
                case O_PREFIX:
                        prefix = optarg;
                        break;
                case O_INDEX:
                        if (parse_uint(optarg, 65535, &index) < 0)
                                return usage("--qemu-bus-start-index: expected a number, got '%s'", optarg);
                        has_index = true;
                        break;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc - 1)
                return usage("vmm args: unexpected argument '%s'", argv[optind + 1]);
        if (!vm)
                return usage("vmm args: --vm is required");
        if (!req)
                return -ENOMEM;
        cJSON_AddStringToObject(req, "action", "vmm_args");
        cJSON_AddStringToObject(req, "vm", vm);
        if (prefix)
                cJSON_AddStringToObject(req, "qemu_bus_prefix", prefix);
        else
                cJSON_AddNullToObject(req, "qemu_bus_prefix");
        if (has_index)
                cJSON_AddNumberToObject(req, "qemu_bus_start_index", index);
        /* A VM's start script runs this early in boot: wait for the API to come up. */
        for (;;) {
                _cleanup_free_ char *err = NULL;
                struct client *cl = NULL;

                r = connect_api(g, &cl, &err);
                client_free(cl);
                if (r >= 0 || now_ms() >= deadline)
                        break;
                sleep(1);
        }
        r = request(g, req, "Failed to get VMM args", &reply);
        if (r < 0)
                return r;
        if (g->json) {
                print_json(reply);
                return 0;
        }
        args = cJSON_GetObjectItemCaseSensitive(reply, "vmm_args");
        cJSON_ArrayForEach(a, args) {
                if (!cJSON_IsString(a))
                        continue;
                printf("%s%s", first ? "" : " ", a->valuestring);
                first = false;
        }
        /* One line for a start script, no newline (as the older client printed it). */
        fflush(stdout);
        return 0;
}

/* ---- status, why, history ---- */

static char *record_text(const cJSON *rec) {
        const char *node = jstr(rec, "device_node") ?: jstr(rec, "pci_address");
        const char *serial = jstr(rec, "serial");
        return fmt("%s %s%s%s%s%s", jstr(rec, "kind") ?: "?", jstr(rec, "ids") ?: "", serial ? " " : "",
                   serial ? serial : "", node ? " " : "", node ? node : "");
}

static int cmd_status(const struct global *g, int argc, char **argv) {
        _cleanup_cjson_ cJSON *req = cJSON_CreateObject(), *reply = NULL;
        const cJSON *vms, *v;
        int r;

        if (argc > 2)
                return usage("status: expected at most one VM name");
        if (!req)
                return -ENOMEM;
        cJSON_AddStringToObject(req, "action", "status");
        if (argc == 2)
                cJSON_AddStringToObject(req, "vm", argv[1]);
        r = request(g, req, "Failed to get the status", &reply);
        if (r < 0)
                return r;
        vms = cJSON_GetObjectItemCaseSensitive(reply, "vms");
        if (g->json) {
                print_json(vms);
                return 0;
        }
        cJSON_ArrayForEach(v, vms) {
                const cJSON *devs = cJSON_GetObjectItemCaseSensitive(v, "devices"), *d;
                const cJSON *missing = cJSON_GetObjectItemCaseSensitive(v, "recorded_not_in_vm");
                bool running = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "running"));
                struct table t = {.ncols = 4, .head = {"ID", "KIND", "DEVICE", "RECORD"}};
                char line[512], safe[1024];

                snprintf(line, sizeof(line), "%s (%s): %s%s%s", jstr(v, "name") ?: "?",
                         jstr(v, "type") ?: "?", running ? "running" : "not running",
                         !running && jstr(v, "error") ? ": " : "", !running ? jstr(v, "error") ?: "" : "");
                printf("%s\n", str_escape(line, safe, sizeof(safe)));
                cJSON_ArrayForEach(d, devs) {
                        const cJSON *rec = cJSON_GetObjectItemCaseSensitive(d, "record");
                        char *what = cJSON_IsObject(rec) ? record_text(rec) : NULL;
                        const cJSON *port = cJSON_GetObjectItemCaseSensitive(d, "port");
                        char *id = jstr(d, "id")          ? strdup(jstr(d, "id"))
                                   : cJSON_IsNumber(port) ? fmt("port %.0f", port->valuedouble)
                                                          : NULL;
                        if (!what && jstr(d, "host"))
                                what = strdup(jstr(d, "host"));
                        if (!what && cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(d, "hostbus")))
                                what = fmt("hostbus %.0f hostaddr %.0f",
                                           cJSON_GetObjectItemCaseSensitive(d, "hostbus")->valuedouble,
                                           cJSON_GetObjectItemCaseSensitive(d, "hostaddr")->valuedouble);
                        table_row(&t, id, jtext(d, "kind"), what,
                                  cJSON_IsObject(rec)
                                          ? strdup("attached")
                                          : strdup(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "ours"))
                                                           ? "no record"
                                                           : "not ours"));
                }
                if (t.nrows)
                        printf("  ");
                table_print(&t, true);
                cJSON_ArrayForEach(d, missing) {
                        _cleanup_free_ char *what = record_text(d);
                        snprintf(line, sizeof(line), "  recorded but not in the VM: %s (%s)",
                                 what ? what : "?", jstr(d, "state") ?: "?");
                        printf("%s\n", str_escape(line, safe, sizeof(safe)));
                }
        }
        return 0;
}

static void history_table(const cJSON *rows, bool with_device) {
        struct table t = {.ncols = with_device ? 7 : 6};
        const cJSON *h;
        const char *head[] = {"TIME", "ACTION", "OUTCOME", "VM", "DEVICE", "BY", "DETAIL"};

        if (with_device)
                memcpy(t.head, head, sizeof(head));
        else {
                const char *h2[] = {"TIME", "ACTION", "OUTCOME", "VM", "BY", "DETAIL"};
                memcpy(t.head, h2, sizeof(h2));
        }
        cJSON_ArrayForEach(h, rows) {
                char *detail = jstr(h, "error") ? fmt("error: %s", jstr(h, "error")) : jtext(h, "detail");
                if (with_device)
                        table_row(&t, jtext(h, "time"), jtext(h, "action"), jtext(h, "outcome"), jtext(h, "vm"),
                                  fmt("%s %s", jstr(h, "kind") ?: "?", jstr(h, "device_node") ?: jstr(h, "pci_address") ?: jstr(h, "devpath") ?: "?"),
                                  jtext(h, "requested_by"), detail);
                else
                        table_row(&t, jtext(h, "time"), jtext(h, "action"), jtext(h, "outcome"),
                                  jtext(h, "vm"), jtext(h, "requested_by"), detail);
        }
        table_print(&t, true);
}

static int cmd_why(const struct global *g, int argc, char **argv) {
        _cleanup_cjson_ cJSON *req = cJSON_CreateObject(), *reply = NULL;
        const cJSON *d, *dec, *choice, *prompt, *record;
        _cleanup_free_ char *id = NULL, *name = NULL, *allowed = NULL;
        char line[1024], safe[2048];
        int r;

        if (argc != 2)
                return usage(
                        "why: expected one DEVICE (a device node, USB name, PCI address or sysfs path)");
        if (!req)
                return -ENOMEM;
        cJSON_AddStringToObject(req, "action", "why");
        cJSON_AddStringToObject(req, "device", argv[1]);
        r = request(g, req, "Failed to explain", &reply);
        if (r < 0)
                return r;
        if (g->json) {
                print_json(reply);
                return 0;
        }
        d = cJSON_GetObjectItemCaseSensitive(reply, "device");
        dec = cJSON_GetObjectItemCaseSensitive(reply, "decision");
        choice = cJSON_GetObjectItemCaseSensitive(reply, "choice");
        prompt = cJSON_GetObjectItemCaseSensitive(reply, "prompt");
        record = cJSON_GetObjectItemCaseSensitive(reply, "record");
        id = jstr(d, "did") ? ids(d, "vid", "did") : ids(d, "vid", "pid");
        name = jstr(d, "device_name") ? names(d, "vendor_name", "device_name")
                                      : names(d, "vendor_name", "product_name");
        allowed = jtext(reply, "allowed_vms");
#define LINE(...)                                                                                           \
        (snprintf(line, sizeof(line), __VA_ARGS__), printf("%s\n", str_escape(line, safe, sizeof(safe))))
        LINE("device:   %s %s %s%s%s", jstr(reply, "kind") ?: "?", jstr(reply, "devpath") ?: "?",
             id ? id : "", name ? " " : "", name ? name : "");
        LINE("decision: %s%s%s (%s)%s%s", jstr(dec, "action") ?: "?", jstr(dec, "vm") ? " to " : "",
             jstr(dec, "vm") ?: "", jstr(dec, "reason") ?: "", jstr(dec, "rule") ? " by " : "",
             jstr(dec, "rule") ?: "");
        if (allowed)
                LINE("allowed:  %s%s", allowed,
                     cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(dec, "asks_for_vm"))
                             ? " (the user chooses)"
                             : "");
        LINE("state:    %s%s%s", jstr(reply, "state") ?: "?", jstr(reply, "vm") ? " " : "",
             jstr(reply, "vm") ?: "");
        if (cJSON_IsObject(choice))
                LINE("choice:   %s%s (set by %s at %s)", jstr(choice, "vm") ?: "no VM",
                     cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(choice, "keep_detached"))
                             ? ", keep detached"
                             : "",
                     jstr(choice, "set_by") ?: "?", jstr(choice, "updated_at") ?: "?");
        else
                LINE("choice:   none stored");
        if (cJSON_IsObject(prompt)) {
                _cleanup_free_ char *vms = jtext(prompt, "allowed_vms");
                LINE("prompt:   waiting since %s for a choice among %s", jstr(prompt, "since") ?: "?",
                     vms ? vms : "?");
        }
        if (cJSON_IsObject(record))
                LINE("record:   %s in %s%s%s%s%s", jstr(record, "state") ?: "?", jstr(record, "vm") ?: "?",
                     jstr(record, "id") ? " as " : "", jstr(record, "id") ?: "",
                     jstr(record, "error") ? ": " : "", jstr(record, "error") ?: "");
        else
                LINE("record:   none open");
#undef LINE
        printf("history:\n");
        history_table(cJSON_GetObjectItemCaseSensitive(reply, "history"), false);
        return 0;
}

static int cmd_history(const struct global *g, int argc, char **argv) {
        _cleanup_cjson_ cJSON *req = cJSON_CreateObject(), *reply = NULL;
        const char *device = NULL;
        unsigned limit = 50;
        int c, r;

        optind = 0;
        while ((c = getopt(argc, argv, "n:")) >= 0) {
                if (c != 'n' || parse_uint(optarg, 10000, &limit) < 0 || limit == 0)
                        return usage("history: -n expects a number from 1 to 10000");
        }
        if (argc - optind > 1)
                return usage("history: expected at most one DEVICE");
        if (optind < argc)
                device = argv[optind];
        if (!req)
                return -ENOMEM;
        cJSON_AddStringToObject(req, "action", "history");
        if (device)
                cJSON_AddStringToObject(req, "device", device);
        cJSON_AddNumberToObject(req, "limit", limit);
        r = request(g, req, "Failed to get the history", &reply);
        if (r < 0)
                return r;
        if (g->json)
                print_json(cJSON_GetObjectItemCaseSensitive(reply, "history"));
        else
                history_table(cJSON_GetObjectItemCaseSensitive(reply, "history"), true);
        return 0;
}

static int run(int argc, char **argv) {
        enum { O_JSON = 0x100, O_CONFIG, O_TIMEOUT, O_VERSION, O_NO_DEBUG };
        static const struct option longopts[] = {
                {"transport", required_argument, NULL, 't'},
                {"path", required_argument, NULL, 'u'},
                {"host", required_argument, NULL, 's'},
                {"net-port", required_argument, NULL, 'p'},
                {"cid", required_argument, NULL, 'c'},
                {"json", no_argument, NULL, O_JSON},
                {"config", required_argument, NULL, O_CONFIG},
                {"timeout", required_argument, NULL, O_TIMEOUT},
                {"debug", no_argument, NULL, 'd'},
                {"no-debug", no_argument, NULL, O_NO_DEBUG},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, O_VERSION},
                {},
        };
        struct global g = {.host = "127.0.0.1",
                           .config = CFG_DEFAULT_PATH,
                           .net_port = CFG_DEFAULT_API_PORT,
                           .cid = 2,
                           .timeout_s = DEFAULT_TIMEOUT_S};
        unsigned u;
        int c;

        /* "+": options stop at the command, as the older client's did. */
        while ((c = getopt_long(argc, argv, "+t:u:s:p:c:dh", longopts, NULL)) >= 0) {
                switch (c) {
                case 't':
                        if (strcmp(optarg, "unix") != 0 && strcmp(optarg, "vsock") != 0 &&
                            strcmp(optarg, "tcp") != 0)
                                return usage("--transport: expected unix, vsock or tcp, got '%s'", optarg);
                        g.transport = optarg;
                        break;
                case 'u':
                        g.path = optarg;
                        break;
                case 's':
                        g.host = optarg;
                        break;
                case 'p':
                        if (parse_uint(optarg, UINT32_MAX - 1, &g.net_port) < 0 || g.net_port == 0)
                                return usage("--net-port: expected a port number, got '%s'", optarg);
                        break;
                case 'c':
                        if (parse_uint(optarg, UINT32_MAX - 1, &g.cid) < 0)
                                return usage("--cid: expected a number, got '%s'", optarg);
                        break;
                case O_JSON:
                        g.json = true;
                        break;
                case O_CONFIG:
                        g.config = optarg;
                        break;
                case O_TIMEOUT:
                        if (parse_uint(optarg, 86400, &u) < 0 || u == 0)
                                return usage("--timeout: expected seconds, got '%s'", optarg);
                        g.timeout_s = (int)u;
                        break;
                case 'd':
                        g.debug = true;
                        break;
                case O_NO_DEBUG:
                        g.debug = false;
                        break;
                case 'h':
                        help();
                        return 0;
                case O_VERSION:
                        printf("vhotplugctl " VHP_VERSION "\n");
                        return 0;
                default:
                        return usage("invalid option");
                }
        }
        argc -= optind;
        argv += optind;
        if (argc == 0)
                return usage("expected a command");
        if (strcmp(argv[0], "usb") == 0 || strcmp(argv[0], "pci") == 0)
                return cmd_device(&g, argv[0][0] == 'u', argc, argv);
        if (strcmp(argv[0], "listen") == 0) {
                if (argc > 1 && strcmp(argv[1], "--json") == 0)
                        g.json = true;
                return cmd_listen(&g, argc, argv);
        }
        if (strcmp(argv[0], "vmm") == 0)
                return cmd_vmm(&g, argc, argv);
        if (strcmp(argv[0], "status") == 0)
                return cmd_status(&g, argc, argv);
        if (strcmp(argv[0], "why") == 0)
                return cmd_why(&g, argc, argv);
        if (strcmp(argv[0], "history") == 0)
                return cmd_history(&g, argc, argv);
        return usage("unknown command '%s'", argv[0]);
}

int main(int argc, char **argv) {
        int r = run(argc, argv);

        if (r == -EINVAL)
                return EXIT_USAGE;
        return r < 0 ? EXIT_FAILED : 0;
}
