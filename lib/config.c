/* Configuration loader: reads the JSON file, checks every key of every object against
 * the tables below, and builds the in-memory form the rule engine reads. Errors name the file, the
 * JSON path and what was expected; unknown or ineffective keys become warnings. Never logs. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "dl.h"
#include "json.h"
#include "util.h"
#include "modalias.h"

#define PATH_DEPTH 16       /* JSON path segments kept for messages (ours nest 6 deep) */
#define KEY_SHOWN 64        /* bytes of a key shown in a path or message */
#define VALUE_SHOWN 48      /* bytes of a string value shown after "got" */
#define REGEX_MAX_GROUPS 32 /* nesting of (...) in one regex */
#define REGEX_MAX_NESTED                                                                                    \
        3                     /* (...)+ or (...){m,n} nested in each other: glibc's regcomp is              \
                                 exponential in it ("((((()+)+)+)+)+" takes minutes) */
#define REGEX_BASE_COST 256   /* estimate units of the smallest compiled pattern (~5 KB) */
#define REGEX_MAX_ANCHORS 8   /* zero-width assertions in one pattern, repeats counted */
#define PORT_PATH_MAX_DEPTH 7 /* USB allows at most 7 tiers */

/* Where a key is valid: one bit per passthrough section (1 << enum dev_kind). */
enum {
        S_USB = 1u << DEV_USB,
        S_PCI = 1u << DEV_PCI,
        S_EVDEV = 1u << DEV_EVDEV,
        S_ALL = S_USB | S_PCI | S_EVDEV,
};

enum field_type {
        FT_CUSTOM,      /* parsed by the caller from found[] */
        FT_TEXT,        /* char *: any string, empty allowed (descriptions) */
        FT_STRING,      /* char *: non-empty string */
        FT_PATH,        /* char *: absolute path */
        FT_BOOL,        /* bool */
        FT_INT,         /* int within [min, max] */
        FT_HEX16,       /* uint16_t: 1 to 4 hex digits */
        FT_REGEX,       /* regex_t: POSIX extended, case-insensitive, anchored at the start */
        FT_PORT_PATH,   /* char *: USB port path "3.2", stored canonical */
        FT_REMOVABLE,   /* unsigned: bit (1 << enum dev_removable) per listed value */
        FT_PCI_ADDRESS, /* char[13]: normalized PCI address */
        FT_NOTE,        /* any value, accepted with the field's note */
};

/* One key of a JSON object: where it is valid, how its value is parsed and where it is stored. */
struct field {
        const char *key;
        unsigned where; /* S_* bits */
        enum field_type type;
        size_t offset; /* into the struct being filled */
        unsigned flag; /* RF_* recorded in cfg_rule.fields once parsed */
        int min, max;  /* FT_INT bounds */
        bool required;
        const char *note; /* once per configuration when the key is used: why it is accepted */
};

/* Note for a key whose effect lies outside the program that reads the file. */
#define NOTE_API_BUILT "accepted; used by vhotplug-api"

#define RULE(k, w, t, m, f)                                                                                 \
        { .key = k, .where = w, .type = t, .offset = offsetof(struct cfg_rule, m), .flag = f }
#define RULE_INT(k, w, m, f, lo, hi)                                                                        \
        {                                                                                                   \
                .key = k, .where = w, .type = FT_INT, .offset = offsetof(struct cfg_rule, m), .flag = f,    \
                .min = lo, .max = hi                                                                        \
        }

enum { R_DISABLE, R_ENABLE };
static const struct field rule_fields[] = {
        [R_DISABLE] = {"disable", S_ALL, FT_CUSTOM},
        [R_ENABLE] = {"enable", S_ALL, FT_CUSTOM},
        RULE("description", S_ALL, FT_TEXT, description, 0),
        RULE("vendorId", S_USB | S_PCI, FT_HEX16, vendor_id, RF_VENDOR_ID),
        RULE("productId", S_USB, FT_HEX16, product_id, RF_PRODUCT_ID),
        RULE("deviceId", S_PCI, FT_HEX16, product_id, RF_PRODUCT_ID),
        RULE("vendorName", S_USB, FT_REGEX, vendor_name, RF_VENDOR_NAME),
        RULE("productName", S_USB, FT_REGEX, product_name, RF_PRODUCT_NAME),
        RULE("serial", S_USB, FT_STRING, serial, RF_SERIAL),
        RULE_INT("bus", S_USB, bus, RF_BUS, 0, 65535),
        RULE_INT("port", S_USB, port, RF_PORT, 0, 255),
        RULE("portPath", S_USB, FT_PORT_PATH, port_path, RF_PORT_PATH),
        RULE_INT("deviceClass", S_USB | S_PCI, dev_class, RF_DEV_CLASS, 0, 255),
        RULE_INT("deviceSubclass", S_USB | S_PCI, dev_subclass, RF_DEV_SUBCLASS, 0, 255),
        RULE_INT("deviceProtocol", S_USB, dev_protocol, RF_DEV_PROTOCOL, 0, 255),
        RULE_INT("deviceProgIf", S_PCI, dev_protocol, RF_DEV_PROTOCOL, 0, 255),
        RULE_INT("interfaceClass", S_USB, if_class, RF_IF_CLASS, 0, 255),
        RULE_INT("interfaceSubclass", S_USB, if_subclass, RF_IF_SUBCLASS, 0, 255),
        RULE_INT("interfaceProtocol", S_USB, if_protocol, RF_IF_PROTOCOL, 0, 255),
        RULE("removable", S_USB, FT_REMOVABLE, removable, RF_REMOVABLE),
        RULE("address", S_PCI, FT_PCI_ADDRESS, address, RF_ADDRESS),
        RULE("name", S_EVDEV, FT_REGEX, name, RF_NAME),
        RULE("pathTag", S_EVDEV, FT_REGEX, path_tag, RF_PATH_TAG),
        RULE("property", S_EVDEV, FT_STRING, property, RF_PROPERTY),
        RULE("value", S_EVDEV, FT_STRING, value, 0), /* checked together with property */
        RULE("driverPath", S_USB, FT_REGEX, driver_path, RF_DRIVER_PATH),
};

#define ENTRY(k, w, t, m)                                                                                   \
        { .key = k, .where = w, .type = t, .offset = offsetof(struct cfg_entry, m) }

enum { E_TARGET_VM, E_ALLOWED_VMS, E_ALLOW, E_DENY, E_DISABLE, E_ENABLE };
static const struct field entry_fields[] = {
        [E_TARGET_VM] = {"targetVm", S_ALL, FT_CUSTOM},
        [E_ALLOWED_VMS] = {"allowedVms", S_USB, FT_CUSTOM},
        [E_ALLOW] = {"allow", S_ALL, FT_CUSTOM},
        [E_DENY] = {"deny", S_ALL, FT_CUSTOM},
        [E_DISABLE] = {"disable", S_ALL, FT_CUSTOM},
        [E_ENABLE] = {"enable", S_ALL, FT_CUSTOM},
        ENTRY("description", S_ALL, FT_TEXT, description),
        {"tag", S_ALL, FT_STRING, offsetof(struct cfg_entry, tag),
         .note = NOTE_API_BUILT " to attach, detach and list devices by tag"},
        ENTRY("skipOnSuspend", S_ALL, FT_BOOL, skip_on_suspend),
        ENTRY("pciIommuAddAll", S_PCI, FT_BOOL, iommu_add_all),
        ENTRY("pciIommuSkipIfShared", S_PCI, FT_BOOL, iommu_skip_if_shared),
        ENTRY("qemuUseRootBus", S_PCI, FT_BOOL, use_root_bus),
        ENTRY("autoOvmf", S_PCI, FT_BOOL, auto_ovmf),
        ENTRY("crosvmUseRootBus", S_PCI, FT_BOOL, crosvm_use_root_bus),
};

enum { V_NAME, V_TYPE };
static const struct field vm_fields[] = {
        [V_NAME] = {"name", S_ALL, FT_CUSTOM, .required = true},
        [V_TYPE] = {"type", S_ALL, FT_CUSTOM, .required = true},
        {"socket", S_ALL, FT_STRING, offsetof(struct cfg_vm, socket), .required = true},
};

#define GENERAL(k, t, m)                                                                                    \
        { .key = k, .where = S_ALL, .type = t, .offset = offsetof(struct cfg_general, m) }
#define NOTE_KMOD                                                                                           \
        "not used: kernel modules are looked up with libkmod in general.modulesDir "                        \
        "(default /lib/modules/`uname -r`)"

enum { G_HOST_MOUNTS, G_API };
static const struct field general_fields[] = {
        [G_HOST_MOUNTS] = {"hostRequiredMounts", S_ALL, FT_CUSTOM},
        [G_API] = {"api", S_ALL, FT_CUSTOM},
        GENERAL("database", FT_PATH, database),
        GENERAL("crosvm", FT_STRING, crosvm),
        GENERAL("lockDir", FT_PATH, lock_dir),
        {"qmpTimeoutMs", S_ALL, FT_INT, offsetof(struct cfg_general, qmp_timeout_ms), .min = 1,
         .max = 600000},
        {"attachRetries", S_ALL, FT_INT, offsetof(struct cfg_general, attach_retries), .min = 0, .max = 100},
        {"eventTimeoutMs", S_ALL, FT_INT, offsetof(struct cfg_general, event_timeout_ms), .min = 100,
         .max = 3600000},
        GENERAL("modulesDir", FT_PATH, modules_dir),
        /* Keys of the older daemon's deployments. */
        GENERAL("ovmfCode", FT_PATH, ovmf_code),
        GENERAL("ovmfVars", FT_PATH, ovmf_vars),
        {"statePath", S_ALL, FT_PATH, offsetof(struct cfg_general, state_path),
         .note = "the older daemon's state file: its choices are imported once into general.database by "
                 "vhotplug-reconcile; the file is never written"},
        {"persistency", S_ALL, FT_BOOL, offsetof(struct cfg_general, persistency),
         .note = "choices are always kept in general.database; false only turns off the statePath import"},
        {"modprobe", S_ALL, FT_NOTE, .note = NOTE_KMOD},
        {"modinfo", S_ALL, FT_NOTE, .note = NOTE_KMOD},
};

enum { A_TRANSPORTS, A_ENABLE, A_DISABLE, A_MODE, A_CIDS, A_PORT };
static const struct field api_fields[] = {
        [A_TRANSPORTS] = {"transports", S_ALL, FT_CUSTOM},
        [A_ENABLE] = {"enable", S_ALL, FT_CUSTOM},
        [A_DISABLE] = {"disable", S_ALL, FT_CUSTOM},
        [A_MODE] = {"unixSocketMode", S_ALL, FT_CUSTOM},
        [A_CIDS] = {"allowedCids", S_ALL, FT_CUSTOM},
        [A_PORT] = {"port", S_ALL, FT_CUSTOM},
        {"unixSocket", S_ALL, FT_PATH, offsetof(struct cfg_api, unix_socket)},
        {"unixSocketUser", S_ALL, FT_STRING, offsetof(struct cfg_api, unix_user)},
        {"unixSocketGroup", S_ALL, FT_STRING, offsetof(struct cfg_api, unix_group)},
        {"host", S_ALL, FT_STRING, offsetof(struct cfg_api, host)},
};

enum { U_ENABLE, U_DISABLE, U_HOST_ALLOW };
static const struct field usb_auth_fields[] = {
        [U_ENABLE] = {"enable", S_ALL, FT_CUSTOM},
        [U_DISABLE] = {"disable", S_ALL, FT_CUSTOM},
        [U_HOST_ALLOW] = {"hostAllow", S_ALL, FT_CUSTOM},
        {"deauthorizeUnmatched", S_ALL, FT_BOOL, offsetof(struct cfg_usb_auth, deauthorize_unmatched)},
        {"description", S_ALL, FT_NOTE},
};

/* acpiPassthrough: entries naming a VM, whose allow list holds the tables (the older daemon's
 * shape); a table may also be given in the entry itself. */
enum { AE_TARGET_VM, AE_ALLOW, AE_DISABLE, AE_ENABLE, AE_TABLE, AE_USER, AE_GROUP };
static const struct field acpi_entry_fields[] = {
        [AE_TARGET_VM] = {"targetVm", S_ALL, FT_CUSTOM},
        [AE_ALLOW] = {"allow", S_ALL, FT_CUSTOM},
        [AE_DISABLE] = {"disable", S_ALL, FT_CUSTOM},
        [AE_ENABLE] = {"enable", S_ALL, FT_CUSTOM},
        [AE_TABLE] = {"acpiTable", S_ALL, FT_CUSTOM},
        [AE_USER] = {"setUser", S_ALL, FT_CUSTOM},
        [AE_GROUP] = {"setGroup", S_ALL, FT_CUSTOM},
        {"description", S_ALL, FT_TEXT, offsetof(struct cfg_acpi_entry, description)},
};

enum { AT_DISABLE, AT_ENABLE };
static const struct field acpi_table_fields[] = {
        [AT_DISABLE] = {"disable", S_ALL, FT_CUSTOM},
        [AT_ENABLE] = {"enable", S_ALL, FT_CUSTOM},
        {"acpiTable", S_ALL, FT_PATH, offsetof(struct cfg_acpi_table, path), .required = true},
        {"setUser", S_ALL, FT_STRING, offsetof(struct cfg_acpi_table, set_user)},
        {"setGroup", S_ALL, FT_STRING, offsetof(struct cfg_acpi_table, set_group)},
        {"description", S_ALL, FT_TEXT, offsetof(struct cfg_acpi_table, description)},
};

enum { T_USB, T_PCI, T_EVDEV, T_VMS, T_USB_AUTHORIZATION, T_GENERAL, T_ACPI };
static const struct field top_fields[] = {
        [T_USB] = {"usbPassthrough", S_ALL, FT_CUSTOM},
        [T_PCI] = {"pciPassthrough", S_ALL, FT_CUSTOM},
        [T_EVDEV] = {"evdevPassthrough", S_ALL, FT_CUSTOM},
        [T_VMS] = {"vms", S_ALL, FT_CUSTOM},
        [T_USB_AUTHORIZATION] = {"usbAuthorization", S_ALL, FT_CUSTOM},
        [T_GENERAL] = {"general", S_ALL, FT_CUSTOM},
        [T_ACPI] = {"acpiPassthrough", S_ALL, FT_CUSTOM},
};

static const char *const section_names[DEV_KIND_MAX] = {
        [DEV_USB] = "usbPassthrough",
        [DEV_PCI] = "pciPassthrough",
        [DEV_EVDEV] = "evdevPassthrough",
};

static const char *const default_host_mounts[] = {"/", "/boot", "/usr"};

/* One step of a JSON path: an object key, or an array index when key is NULL. */
struct segment {
        const char *key;
        size_t index;
};

/* Parsing state: the configuration being built and the JSON path of the value at hand. The path
 * is kept as segments pointing into the JSON tree and only rendered for a message. */
struct ctx {
        const char *file;
        unsigned flags; /* CFG_CHECK_HOST */
        struct cfg *c;
        struct cfg_error *err;
        size_t n_rules;                /* over all sections, against CFG_MAX_RULES */
        unsigned long regex_cost;      /* over all patterns, against CFG_REGEX_MAX_TOTAL_COST */
        const struct field *noted[16]; /* fields whose note was given */
        size_t n_noted;
        size_t depth;
        struct segment path[PATH_DEPTH];
};

/* Writes s into buf as printable ASCII (quotes, backslashes, control and non-ASCII bytes escaped),
 * at most max bytes of s, with "..." when cut. */
static void escape(const char *s, size_t max, char *buf, size_t size) {
        static const char hex[] = "0123456789abcdef";
        size_t o = 0, i;

        for (i = 0; s[i] && i < max; i++) {
                unsigned char ch = (unsigned char)s[i];
                char tmp[4];
                size_t l = 0;

                if (ch == '"' || ch == '\\' || ch == '\n' || ch == '\t') {
                        tmp[l++] = '\\';
                        tmp[l++] = ch == '\n' ? 'n' : ch == '\t' ? 't' : (char)ch;
                } else if (ch < 0x20 || ch >= 0x7f) {
                        tmp[l++] = '\\';
                        tmp[l++] = 'x';
                        tmp[l++] = hex[ch >> 4];
                        tmp[l++] = hex[ch & 0xf];
                } else
                        tmp[l++] = (char)ch;
                if (o + l + 4 >= size)
                        break;
                memcpy(buf + o, tmp, l);
                o += l;
        }
        if (s[i] && o + 3 < size) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = '\0';
}

/* Describes a JSON value for "got ..." in messages. */
static const char *describe(const cJSON *v, char *buf, size_t size) {
        if (cJSON_IsString(v)) {
                char tmp[VALUE_SHOWN * 4 + 4];
                escape(v->valuestring, VALUE_SHOWN, tmp, sizeof(tmp));
                snprintf(buf, size, "\"%s\"", tmp);
        } else if (cJSON_IsNumber(v))
                snprintf(buf, size, "%.10g", v->valuedouble);
        else if (cJSON_IsBool(v))
                snprintf(buf, size, "%s", cJSON_IsTrue(v) ? "true" : "false");
        else if (cJSON_IsNull(v))
                snprintf(buf, size, "null");
        else if (cJSON_IsArray(v))
                snprintf(buf, size, "an array");
        else
                snprintf(buf, size, "an object");
        return buf;
}

/* Pushes an object key onto the path; returns the mark path_pop() goes back to. */
static size_t path_key(struct ctx *x, const char *key) {
        if (x->depth < PATH_DEPTH)
                x->path[x->depth] = (struct segment){.key = key};
        return x->depth++;
}

static size_t path_index(struct ctx *x, size_t index) {
        if (x->depth < PATH_DEPTH)
                x->path[x->depth] = (struct segment){.index = index};
        return x->depth++;
}

static void path_pop(struct ctx *x, size_t mark) {
        x->depth = mark;
}

/* "usbPassthrough[0].allow[2].vendorId", keys escaped and cut. */
static void path_render(const struct ctx *x, char *buf, size_t size) {
        size_t o = 0, n = x->depth < PATH_DEPTH ? x->depth : PATH_DEPTH;

        buf[0] = '\0';
        for (size_t i = 0; i < n && o + 1 < size; i++) {
                const struct segment *seg = &x->path[i];
                if (seg->key) {
                        if (i > 0)
                                buf[o++] = '.';
                        escape(seg->key, KEY_SHOWN, buf + o, size - o);
                } else
                        snprintf(buf + o, size - o, "[%zu]", seg->index);
                o += strlen(buf + o);
        }
        if (x->depth > PATH_DEPTH && o + 4 < size)
                strcpy(buf + o, "...");
}

/* Formats "FILE: PATH: what" (or "FILE: what" at the top). */
static void vformat(const struct ctx *x, char *buf, size_t size, const char *fmt, va_list ap) {
        char what[768], path[300];

        vsnprintf(what, sizeof(what), fmt, ap);
        path_render(x, path, sizeof(path));
        if (x->depth > 0)
                snprintf(buf, size, "%.200s: %s: %.500s", x->file, path, what);
        else
                snprintf(buf, size, "%.200s: %.500s", x->file, what);
}

__attribute__((format(printf, 2, 3))) static int fail(struct ctx *x, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vformat(x, x->err->msg, sizeof(x->err->msg), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int oom(struct ctx *x) {
        snprintf(x->err->msg, sizeof(x->err->msg), "%.200s: out of memory", x->file);
        return -ENOMEM;
}

/* "expected WHAT, got VALUE" at the current path. */
static int fail_expected(struct ctx *x, const cJSON *v, const char *what) {
        char got[VALUE_SHOWN * 4 + 8];
        return fail(x, "expected %s, got %s", what, describe(v, got, sizeof(got)));
}

static int add_line(struct ctx *x, char ***lines, size_t *n, const char *line) {
        char **w = realloc(*lines, (*n + 1) * sizeof(*w));

        if (!w)
                return oom(x);
        *lines = w;
        w[*n] = strdup(line);
        if (!w[*n])
                return oom(x);
        (*n)++;
        return 0;
}

/* Adds "FILE: PATH: message" to a capped list (warnings or notes). */
static int vadd(struct ctx *x, char ***lines, size_t *n, size_t max, const char *what, const char *fmt,
                va_list ap) {
        char line[sizeof(x->err->msg)];

        if (*n > max)
                return 0;
        if (*n == max) {
                snprintf(line, sizeof(line), "%.200s: more than %zu %s, not showing the rest", x->file, max,
                         what);
                return add_line(x, lines, n, line);
        }
        vformat(x, line, sizeof(line), fmt, ap);
        return add_line(x, lines, n, line);
}

__attribute__((format(printf, 2, 3))) static int warn(struct ctx *x, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vadd(x, &x->c->warnings, &x->c->n_warnings, CFG_MAX_WARNINGS, "warnings", fmt, ap);
        va_end(ap);
        return r;
}

__attribute__((format(printf, 2, 3))) static int note(struct ctx *x, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vadd(x, &x->c->notes, &x->c->n_notes, CFG_MAX_NOTES, "notes", fmt, ap);
        va_end(ap);
        return r;
}

/* The note of field f, at the current path, the first time f is used. */
static int note_field(struct ctx *x, const struct field *f) {
        if (!f->note)
                return 0;
        for (size_t i = 0; i < x->n_noted; i++)
                if (x->noted[i] == f)
                        return 0;
        if (x->n_noted < ELEMENTSOF(x->noted))
                x->noted[x->n_noted++] = f;
        return note(x, "%s", f->note);
}

/* Case-insensitive edit distance, for "did you mean": insertions, deletions, substitutions and
 * swaps of neighbours ("prot" is one step from "port"). Long keys are never close. */
static size_t edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b), rows[3][KEY_SHOWN + 1];

        if (la > KEY_SHOWN || lb > KEY_SHOWN)
                return SIZE_MAX;
        for (size_t j = 0; j <= lb; j++)
                rows[0][j] = j;
        for (size_t i = 1; i <= la; i++) {
                size_t *cur = rows[i % 3], *up = rows[(i - 1) % 3], *up2 = rows[(i + 1) % 3];
                cur[0] = i;
                for (size_t j = 1; j <= lb; j++) {
                        int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
                        size_t best = up[j - 1] + (ca != cb);
                        if (up[j] + 1 < best)
                                best = up[j] + 1;
                        if (cur[j - 1] + 1 < best)
                                best = cur[j - 1] + 1;
                        if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                            tolower((unsigned char)a[i - 2]) == cb && up2[j - 2] + 1 < best)
                                best = up2[j - 2] + 1;
                        cur[j] = best;
                }
        }
        return rows[la % 3][lb];
}

/* The known key closest to an unknown one, and whether it is close enough to be a typo of it. */
static const char *closest(const char *key, const struct field *tab, size_t n, unsigned where,
                           bool *ret_typo) {
        const char *best = NULL;
        size_t best_d = SIZE_MAX;

        for (size_t i = 0; i < n; i++) {
                if (!(tab[i].where & where))
                        continue;
                size_t d = edit_distance(key, tab[i].key);
                if (!best || d < best_d) {
                        best = tab[i].key;
                        best_d = d;
                }
        }
        *ret_typo = best && best_d < 3 && best_d * 3 <= strlen(best);
        return best;
}

/* "usbPassthrough" or "usbPassthrough and pciPassthrough", for a set of S_* bits. */
static void sections_text(unsigned where, char *buf, size_t size) {
        size_t o = 0;

        buf[0] = '\0';
        for (int k = 0; k < DEV_KIND_MAX; k++) {
                if (!section_names[k] || !(where & (1u << k)))
                        continue;
                int n = snprintf(buf + o, size - o, "%s%s", o ? " and " : "", section_names[k]);
                if (n < 0 || (size_t)n >= size - o)
                        return;
                o += (size_t)n;
        }
}

/* Files key item (the current path) into found[]: unknown keys warn (are errors in a strict
 * object: rules, entries), misplaced and repeated keys are errors. */
static int classify_key(struct ctx *x, const cJSON *item, const struct field *tab, size_t n, unsigned where,
                        bool strict, const cJSON **found) {
        const char *key = item->string, *hint;
        char shown[KEY_SHOWN * 4 + 4];
        bool typo;

        escape(key, KEY_SHOWN, shown, sizeof(shown));
        for (size_t i = 0; i < n; i++) {
                if (strcmp(key, tab[i].key) != 0)
                        continue;
                if (!(tab[i].where & where)) {
                        char valid[128], here[64];
                        sections_text(tab[i].where, valid, sizeof(valid));
                        sections_text(where, here, sizeof(here));
                        return fail(x, "'%s' belongs to %s; it cannot be used in %s", shown, valid, here);
                }
                if (found[i])
                        return fail(x, "duplicate key '%s'", shown);
                found[i] = item;
                return 0;
        }
        hint = closest(key, tab, n, where, &typo);
        if (strict && typo)
                return fail(x, "unknown key '%s' (did you mean '%s'?)", shown, hint);
        if (strict)
                return fail(x, "unknown key '%s' (the closest known key is '%s')", shown,
                            hint ? hint : "none");
        if (typo)
                return warn(x, "unknown key '%s' (did you mean '%s'?), ignoring", shown, hint);
        return warn(x, "unknown key '%s', ignoring", shown);
}

static int get_string(struct ctx *x, const cJSON *v, bool allow_empty, const char **ret) {
        if (!cJSON_IsString(v))
                return fail_expected(x, v, allow_empty ? "a string" : "a non-empty string");
        size_t len = strnlen(v->valuestring, CFG_MAX_STRING + 1);
        if (len > CFG_MAX_STRING)
                return fail(x, "expected a string of at most %d bytes, got a longer one", CFG_MAX_STRING);
        if (len == 0 && !allow_empty)
                return fail_expected(x, v, "a non-empty string");
        *ret = v->valuestring;
        return 0;
}

static int set_string(struct ctx *x, char **slot, const char *s) {
        char *copy = strdup(s);

        if (!copy)
                return oom(x);
        free(*slot);
        *slot = copy;
        return 0;
}

static int get_int(struct ctx *x, const cJSON *v, int min, int max, int *ret) {
        /* The range test also rejects NaN and infinities. */
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max) ||
            v->valuedouble != (double)(int)v->valuedouble) {
                char what[64];
                snprintf(what, sizeof(what), "an integer from %d to %d", min, max);
                return fail_expected(x, v, what);
        }
        *ret = (int)v->valuedouble;
        return 0;
}

static int get_hex16(struct ctx *x, const cJSON *v, uint16_t *ret) {
        static const char what[] = "a string of 1 to 4 hex digits, like \"0bda\"";
        const char *s;
        size_t len;

        if (!cJSON_IsString(v))
                return fail_expected(x, v, what);
        s = v->valuestring;
        len = strlen(s);
        if (len < 1 || len > 4 || strspn(s, "0123456789abcdefABCDEF") != len)
                return fail_expected(x, v, what);
        *ret = (uint16_t)strtoul(s, NULL, 16);
        return 0;
}

/* Cost model of glibc's regcomp. Sizes count automaton nodes; a {m,n} repeats its operand max(n,1)
 * times, and n-m optional copies make the epsilon closures grow with the square of their length
 * (".{0,1000}": 16 MB, ".{0,9999}": 1.6 GB). The estimate is an upper bound for what glibc builds,
 * kept simple: it may refuse a pattern glibc would manage. What the model cannot price is refused
 * outright (found by fuzz/fuzz-regex.c): empty alternatives ("(a||)" x 200: 590 MB; POSIX leaves
 * them undefined), repeating what can match the empty string ("(a?){0,90}": 5 MB for 90 nodes),
 * and runs of zero-width assertions ("(^|$)" x 52: 850 MB, "\b" x 1000: minutes). */
struct rx_piece {
        unsigned long size;    /* automaton nodes */
        unsigned long cost;    /* estimated cost of compiling it */
        unsigned long anchors; /* zero-width assertions (^ $ \b \B \< \> \` \'), repeats counted */
        bool nullable;         /* it can match the empty string */
};

struct rx_group {
        struct rx_piece done; /* the finished alternatives, one node per '|' */
        struct rx_piece cur;  /* the alternative being read */
        struct rx_piece last; /* its last piece: what a quantifier repeats */
        bool before_nullable; /* the pieces of cur before last can all match the empty string */
        bool empty;           /* cur has no piece yet */
        bool bar;             /* the group has a '|' */
        int nested;           /* deepest repeated-group nesting inside (see REGEX_MAX_NESTED) */
};

#define RX_SAT (1ul << 40) /* saturation: far above any limit, far below overflow */

static unsigned long sat_mul(unsigned long a, unsigned long b) {
        return a && b > RX_SAT / a ? RX_SAT : a * b;
}

static unsigned long sat_add(unsigned long a, unsigned long b) {
        return a + b > RX_SAT ? RX_SAT : a + b;
}

static void rx_open(struct rx_group *g) {
        *g = (struct rx_group){.cur.nullable = true, .before_nullable = true, .empty = true};
}

static void rx_add(struct rx_group *g, struct rx_piece p) {
        g->before_nullable = g->cur.nullable;
        g->cur.size = sat_add(g->cur.size, p.size);
        g->cur.cost = sat_add(g->cur.cost, p.cost);
        g->cur.anchors = sat_add(g->cur.anchors, p.anchors);
        g->cur.nullable = g->cur.nullable && p.nullable;
        g->last = p;
        g->empty = false;
}

/* Replaces g's last piece by copies of it, opt of them optional. */
static void rx_repeat(struct rx_group *g, unsigned long copies, unsigned long opt, bool nullable) {
        struct rx_piece p = g->last, q;
        unsigned long chain = sat_mul(p.size, opt);

        q.size = sat_mul(p.size, copies);
        q.cost = sat_add(sat_add(sat_mul(p.cost, copies), sat_mul(chain, chain)), q.size);
        q.anchors = sat_mul(p.anchors, copies);
        q.nullable = nullable || p.nullable;
        g->cur.size = sat_add(g->cur.size - p.size, q.size);
        g->cur.cost = sat_add(g->cur.cost - p.cost, q.cost);
        g->cur.anchors = sat_add(g->cur.anchors - p.anchors, q.anchors);
        g->cur.nullable = g->before_nullable && q.nullable;
        g->last = q;
}

/* The group's alternatives as one piece. */
static struct rx_piece rx_close(const struct rx_group *g) {
        return (struct rx_piece){
                .size = sat_add(g->done.size, g->cur.size),
                .cost = sat_add(g->done.cost, g->cur.cost),
                .anchors = sat_add(g->done.anchors, g->cur.anchors),
                .nullable = g->done.nullable || g->cur.nullable,
        };
}

/* A repeat count of digits digits at s; long ones are merely "too large". */
static unsigned long rx_count(const char *s, size_t digits) {
        return digits > 6 ? 999999 : strtoul(s, NULL, 10);
}

/* Reads "{m}", "{m,}", "{,n}" or "{m,n}" at s; returns its length (0: not an interval, a literal
 * brace), with *ret_open set for "{m,}". */
static size_t rx_interval(const char *s, unsigned long *ret_min, unsigned long *ret_max, bool *ret_open) {
        const char *q = s + 1;
        size_t lo_digits = strspn(q, "0123456789"), hi_digits = 0;
        unsigned long lo = lo_digits ? rx_count(q, lo_digits) : 0, hi = lo;
        bool comma = false;

        q += lo_digits;
        if (*q == ',') {
                comma = true;
                q++;
                hi_digits = strspn(q, "0123456789");
                hi = hi_digits ? rx_count(q, hi_digits) : 0;
                q += hi_digits;
                if (!lo_digits && !hi_digits)
                        return 0;
        } else if (!lo_digits)
                return 0;
        if (*q != '}')
                return 0;
        *ret_min = lo;
        *ret_max = hi;
        *ret_open = comma && !hi_digits;
        return (size_t)(q - s) + 1;
}

/* Skips a bracket expression starting at s ('['): a leading ']' is literal, [:x:] [=x=] [.x.]
 * nest. Returns its last character (']'), or NULL when it is not closed (regcomp reports it). */
static const char *rx_bracket(const char *s) {
        s++;
        if (*s == '^')
                s++;
        if (*s == ']')
                s++;
        for (; *s && *s != ']'; s++) {
                if (*s == '[' && (s[1] == ':' || s[1] == '=' || s[1] == '.')) {
                        const char *end = strchr(s + 2, s[1]);
                        while (end && end[1] != ']')
                                end = strchr(end + 1, s[1]);
                        if (!end)
                                return NULL;
                        s = end + 1;
                }
        }
        return *s ? s : NULL;
}

/* Checks what wrapping a pattern in "^(" ")" would break or regcomp would blow up on: an unmatched
 * ')' (glibc takes it literally, and it would close our group), back-references (their numbers
 * shift), stacked or deeply nested repetitions (exponential in glibc), large bounds, what the cost
 * model cannot price (see struct rx_piece), and an estimated cost above CFG_REGEX_MAX_COST. Returns
 * NULL and the cost, or the reason. */
static const char *regex_cost(const char *p, unsigned long *ret_cost) {
        static const struct rx_piece atom = {.size = 1},
                                     assertion = {.size = 1, .anchors = 1, .nullable = true};
        struct rx_group stack[REGEX_MAX_GROUPS + 1], *g = stack;
        unsigned long lo, hi;
        bool open;
        size_t len;

        rx_open(g);
        for (const char *s = p; *s; s++) {
                /* glibc copies the operand of each stacked operator ("x++", "x+*+"): exponential */
                if (strchr("+*?{", *s) && s > p && strchr("+*?}", s[-1]) && !(s - 1 > p && s[-2] == '\\'))
                        return "stacked repetition operators (like \"a+*\") are not supported";
                /* something to repeat that can match the empty string */
                if (strchr("+*{", *s) && !g->empty && g->last.nullable &&
                    (*s != '{' || rx_interval(s, &lo, &hi, &open) > 0))
                        return "repeating what can match the empty string (like \"(a?)*\" or \"(^)+\") is "
                               "not supported";
                switch (*s) {
                case '\\':
                        if (s[1] >= '1' && s[1] <= '9')
                                return "back-references are not supported";
                        if (s[1] && strchr("bB<>`'", s[1]))
                                rx_add(g, assertion);
                        else
                                rx_add(g, atom);
                        if (s[1])
                                s++;
                        break;
                case '^':
                case '$':
                        rx_add(g, assertion);
                        break;
                case '[': {
                        const char *end = rx_bracket(s);
                        if (!end)
                                return NULL; /* regcomp reports it */
                        s = end;
                        rx_add(g, atom);
                        break;
                }
                case '(':
                        if (g == stack + REGEX_MAX_GROUPS)
                                return "groups are nested too deeply";
                        rx_open(++g);
                        break;
                case ')': {
                        if (g == stack)
                                return "unmatched ')' (write '\\)' for a literal parenthesis)";
                        if (g->empty && g->bar)
                                return "empty alternatives (like \"a|\" or \"(|a)\") are not supported; "
                                       "write \"(a)?\"";
                        struct rx_group *in = g--;
                        int n = in->nested;
                        /* each quantifier stacked on the group ("(x)++", "(x)+{2}") nests once more */
                        for (const char *q = s + 1; *q == '+' || *q == '*' || *q == '?' || *q == '{'; q++) {
                                if (*q == '+' || *q == '{')
                                        n++;
                                if (*q == '{' && !(q = strchr(q, '}')))
                                        break;
                        }
                        if (n > REGEX_MAX_NESTED)
                                return "repeated groups are nested too deeply";
                        if (n > g->nested)
                                g->nested = n;
                        rx_add(g, rx_close(in));
                        break;
                }
                case '|':
                        if (g->empty)
                                return "empty alternatives (like \"a|\" or \"(|a)\") are not supported; "
                                       "write \"(a)?\"";
                        g->done.size = sat_add(g->done.size, sat_add(g->cur.size, 1));
                        g->done.cost = sat_add(g->done.cost, g->cur.cost);
                        g->done.anchors = sat_add(g->done.anchors, g->cur.anchors);
                        g->done.nullable = g->done.nullable || g->cur.nullable;
                        g->cur = (struct rx_piece){.nullable = true};
                        g->before_nullable = g->empty = g->bar = true;
                        break;
                case '*':
                case '?':
                case '+':
                        if (g->empty)
                                rx_add(g, atom); /* nothing to repeat: literal, or regcomp's error */
                        else
                                rx_repeat(g, *s == '+' ? 2 : 1, 1, *s != '+');
                        break;
                case '{':
                        len = rx_interval(s, &lo, &hi, &open);
                        if (len == 0 || g->empty) {
                                rx_add(g, atom);
                                break;
                        }
                        if (lo > CFG_REGEX_MAX_REPEAT || hi > CFG_REGEX_MAX_REPEAT)
                                return "repetition counts ({m,n}) above 255 are not supported";
                        if (open)
                                rx_repeat(g, lo + 1, 1, lo == 0);
                        else
                                rx_repeat(g, hi > 0 ? hi : 1, hi > lo ? hi - lo : 0, lo == 0);
                        s += len - 1;
                        break;
                default:
                        rx_add(g, atom);
                        break;
                }
                if (g->cur.cost > CFG_REGEX_MAX_COST)
                        break;
        }
        if (g == stack && g->empty && g->bar)
                return "empty alternatives (like \"a|\" or \"(|a)\") are not supported; write \"(a)?\"";
        struct rx_piece all = rx_close(stack);
        for (const struct rx_group *o = stack + 1; o <= g; o++) /* unclosed groups: regcomp refuses */
                all.cost = sat_add(all.cost, rx_close(o).cost);
        if (all.cost > CFG_REGEX_MAX_COST)
                return "too costly to compile (large or nested repetitions; see vhotplug.conf(5))";
        if (all.anchors > REGEX_MAX_ANCHORS)
                return "more than 8 anchors or word boundaries (^, $, \\b, \\B, \\<, \\>), counting repeats";
        *ret_cost = sat_add(all.cost, all.size);
        return NULL;
}

int cfg_regex_compile(const char *pattern, regex_t *ret, unsigned *ret_cost, char *why, size_t whylen) {
        _cleanup_free_ char *anchored = NULL;
        unsigned long cost = 0;
        const char *problem;
        int r;

        problem = regex_cost(pattern, &cost);
        if (problem) {
                snprintf(why, whylen, "%s", problem);
                return -EINVAL;
        }
        if (asprintf(&anchored, "^(%s)", pattern) < 0) {
                snprintf(why, whylen, "out of memory");
                return -ENOMEM;
        }
        r = regcomp(ret, anchored, REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (r != 0) {
                regerror(r, ret, why, whylen);
                return r == REG_ESPACE ? -ENOMEM : -EINVAL;
        }
        if (ret_cost)
                *ret_cost = (unsigned)cost;
        return 0;
}

static int get_regex(struct ctx *x, const cJSON *v, regex_t *ret) {
        const char *s;
        char shown[VALUE_SHOWN * 4 + 8], why[128];
        unsigned cost;
        int r;

        r = get_string(x, v, false, &s);
        if (r < 0)
                return r;
        describe(v, shown, sizeof(shown));
        r = cfg_regex_compile(s, ret, &cost, why, sizeof(why));
        if (r == -ENOMEM)
                return oom(x);
        if (r < 0)
                return fail(x, "invalid regular expression %s: %s", shown, why);
        /* Every helper compiles every pattern: bound the whole file too. The base covers the
         * automaton glibc builds for even the shortest pattern. */
        x->regex_cost += REGEX_BASE_COST + cost;
        if (x->regex_cost > CFG_REGEX_MAX_TOTAL_COST) {
                regfree(ret);
                return fail(x,
                            "the regular expressions of this configuration are too costly to compile "
                            "(more than %u units in all; see vhotplug.conf(5))",
                            CFG_REGEX_MAX_TOTAL_COST);
        }
        return 0;
}

/* "3.2" or "03.2" -> "3.2": dot-separated port numbers 1..255. */
static int get_port_path(struct ctx *x, const cJSON *v, char **ret) {
        static const char what[] = "a USB port path of numbers 1-255 joined by dots, like \"3.2\"";
        char canon[PORT_PATH_MAX_DEPTH * 4 + 1];
        const char *s;
        size_t o = 0;
        int depth = 0;

        if (!cJSON_IsString(v))
                return fail_expected(x, v, what);
        for (s = v->valuestring;; s++) {
                size_t digits = strspn(s, "0123456789");
                if (digits == 0 || digits > 3 || ++depth > PORT_PATH_MAX_DEPTH)
                        return fail_expected(x, v, what);
                unsigned long n = strtoul(s, NULL, 10);
                if (n < 1 || n > 255)
                        return fail_expected(x, v, what);
                o += (size_t)snprintf(canon + o, sizeof(canon) - o, "%s%lu", o ? "." : "", n);
                s += digits;
                if (*s == '\0')
                        break;
                if (*s != '.')
                        return fail_expected(x, v, what);
        }
        return set_string(x, ret, canon);
}

static int get_removable(struct ctx *x, const cJSON *v, unsigned *ret) {
        static const char what[] = "a non-empty array of \"fixed\", \"removable\" or \"unknown\"";
        static const struct {
                const char *name;
                enum dev_removable value;
        } names[] = {
                {"fixed", DEV_REMOVABLE_FIXED},
                {"removable", DEV_REMOVABLE_REMOVABLE},
                {"unknown", DEV_REMOVABLE_UNKNOWN},
        };
        const cJSON *item;
        unsigned bits = 0;
        size_t i = 0;

        if (!cJSON_IsArray(v) || !v->child)
                return fail_expected(x, v, what);
        cJSON_ArrayForEach(item, v) {
                size_t mark = path_index(x, i++), k;
                for (k = 0; k < ELEMENTSOF(names); k++)
                        if (cJSON_IsString(item) && strcasecmp(item->valuestring, names[k].name) == 0)
                                break;
                if (k == ELEMENTSOF(names))
                        return fail_expected(x, item, "\"fixed\", \"removable\" or \"unknown\"");
                bits |= 1u << names[k].value;
                path_pop(x, mark);
        }
        *ret = bits;
        return 0;
}

/* Parses one value of a simple type into the struct at target. */
static int parse_value(struct ctx *x, const cJSON *v, const struct field *f, void *target) {
        void *slot;
        const char *s;
        int r;

        r = note_field(x, f);
        if (r < 0 || f->type == FT_CUSTOM || f->type == FT_NOTE)
                return r;
        slot = (char *)target + f->offset;
        switch (f->type) {
        case FT_TEXT:
        case FT_STRING:
                r = get_string(x, v, f->type == FT_TEXT, &s);
                return r < 0 ? r : set_string(x, slot, s);
        case FT_PATH:
                r = get_string(x, v, false, &s);
                if (r < 0)
                        return r;
                if (s[0] != '/')
                        return fail_expected(x, v, "an absolute path");
                return set_string(x, slot, s);
        case FT_BOOL:
                if (!cJSON_IsBool(v))
                        return fail_expected(x, v, "true or false");
                *(bool *)slot = cJSON_IsTrue(v);
                return 0;
        case FT_INT:
                return get_int(x, v, f->min, f->max, slot);
        case FT_HEX16:
                return get_hex16(x, v, slot);
        case FT_REGEX:
                return get_regex(x, v, slot);
        case FT_PORT_PATH:
                return get_port_path(x, v, slot);
        case FT_REMOVABLE:
                return get_removable(x, v, slot);
        case FT_PCI_ADDRESS:
                if (!cJSON_IsString(v) || pci_address_normalize(v->valuestring, slot) < 0)
                        return fail_expected(x, v, "a PCI address like \"0000:00:14.3\" or \"00:14.3\"");
                return 0;
        case FT_NOTE:
        case FT_CUSTOM:
                break;
        }
        return 0;
}

/* Checks the keys of object obj against tab for section bits where, parses every present
 * simple-typed field into target (OR-ing its flag into *fields when given), and leaves each
 * present key's value in found[] for the caller's FT_CUSTOM ones. */
static int parse_object(struct ctx *x, const cJSON *obj, const struct field *tab, size_t n, unsigned where,
                        bool strict, void *target, unsigned *fields, const cJSON **found) {
        const cJSON *item;
        size_t mark;
        int r;

        if (!cJSON_IsObject(obj))
                return fail_expected(x, obj, "an object");
        memset(found, 0, n * sizeof(*found));
        for (item = obj->child; item; item = item->next) {
                mark = path_key(x, item->string);
                r = classify_key(x, item, tab, n, where, strict, found);
                path_pop(x, mark);
                if (r < 0)
                        return r;
        }
        /* null means absent: what NixOS's toJSON writes for an option left unset ("bus": null in
         * Ghaf's static USB rules), and what the older daemon read as absent. */
        for (size_t i = 0; i < n; i++)
                if (found[i] && cJSON_IsNull(found[i]))
                        found[i] = NULL;
        for (size_t i = 0; i < n; i++) {
                if (!found[i]) {
                        if (tab[i].required)
                                return fail(x, "missing required key '%s'", tab[i].key);
                        continue;
                }
                mark = path_key(x, tab[i].key);
                r = parse_value(x, found[i], &tab[i], target);
                path_pop(x, mark);
                if (r < 0)
                        return r;
                if (fields)
                        *fields |= tab[i].flag;
        }
        return 0;
}

/* disable/enable: enable:false means disable:true; contradicting values are an error. Neither
 * given: def. */
static int parse_enabled(struct ctx *x, const cJSON *disable, const cJSON *enable, bool def, bool *ret) {
        bool enabled = def;

        if (disable) {
                if (!cJSON_IsBool(disable)) {
                        path_key(x, "disable");
                        return fail_expected(x, disable, "true or false");
                }
                enabled = !cJSON_IsTrue(disable);
        }
        if (enable) {
                if (!cJSON_IsBool(enable)) {
                        path_key(x, "enable");
                        return fail_expected(x, enable, "true or false");
                }
                if (disable && cJSON_IsTrue(enable) != enabled)
                        return fail(x, "'disable' and 'enable' contradict each other");
                enabled = cJSON_IsTrue(enable);
        }
        *ret = enabled;
        return 0;
}

/* Validates an array and its length; returns the length or a negative errno. */
static long get_array(struct ctx *x, const cJSON *v, const char *what, size_t max) {
        size_t n = 0;
        const cJSON *item;

        if (!cJSON_IsArray(v))
                return fail_expected(x, v, what);
        cJSON_ArrayForEach(item, v) if (++n > max) return fail(x, "too many items: at most %zu allowed",
                                                               max);
        return (long)n;
}

static void rule_free_contents(struct cfg_rule *r) {
        for (size_t i = 0; i < ELEMENTSOF(rule_fields); i++)
                if (rule_fields[i].type == FT_REGEX && (r->fields & rule_fields[i].flag))
                        regfree((regex_t *)((char *)r + rule_fields[i].offset));
        free(r->description);
        free(r->serial);
        free(r->port_path);
        free(r->property);
        free(r->value);
}

/* Lists the match fields of a section, for "a rule needs one of ...". */
static void match_fields_text(unsigned where, char *buf, size_t size) {
        size_t o = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(rule_fields); i++) {
                if (!rule_fields[i].flag || !(rule_fields[i].where & where))
                        continue;
                int n = snprintf(buf + o, size - o, "%s%s", o ? ", " : "", rule_fields[i].key);
                if (n < 0 || (size_t)n >= size - o)
                        return;
                o += (size_t)n;
        }
}

/* The field groups the older daemon tried one after the other, accepting a device when any one
 * group held. We AND every field of a rule; a rule mixing groups gets a note saying so. */
static const unsigned or_groups[] = {
        RF_VENDOR_ID | RF_PRODUCT_ID,
        RF_VENDOR_NAME,
        RF_PRODUCT_NAME,
        RF_BUS | RF_PORT,
        RF_DEV_CLASS | RF_DEV_SUBCLASS | RF_DEV_PROTOCOL,
        RF_IF_CLASS | RF_IF_SUBCLASS | RF_IF_PROTOCOL,
        RF_DRIVER_PATH,
        RF_ADDRESS,
        RF_NAME,
        RF_PATH_TAG,
        RF_PROPERTY,
};

/* "vendorId+productId" for the fields of bits present in a rule of section where. */
static size_t fields_text(unsigned bits, unsigned where, char *buf, size_t size) {
        size_t o = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(rule_fields); i++) {
                if (!(rule_fields[i].flag & bits) || !(rule_fields[i].where & where))
                        continue;
                int n = snprintf(buf + o, size - o, "%s%s", o ? "+" : "", rule_fields[i].key);
                if (n < 0 || (size_t)n >= size - o)
                        break;
                o += (size_t)n;
        }
        return o;
}

/* Notes where our AND differs from what the older daemon did with the same rule. */
static int note_semantics(struct ctx *x, const struct cfg_rule *r, enum dev_kind kind) {
        unsigned where = 1u << kind, f = r->fields;
        char list[256], one[96];
        size_t o = 0, groups = 0;

        for (size_t i = 0; i < ELEMENTSOF(or_groups); i++) {
                if (!(f & or_groups[i]))
                        continue;
                groups++;
                fields_text(f & or_groups[i], where, one, sizeof(one));
                o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", o ? ", " : "", one);
                if (o >= sizeof(list))
                        o = sizeof(list) - 1;
        }
        if (groups > 1)
                return note(x,
                            "%s are combined with AND: all of them must hold (the older daemon accepted "
                            "a device when any one of them held)",
                            list);
        if (kind != DEV_EVDEV && (f & (RF_VENDOR_ID | RF_PRODUCT_ID)) &&
            (f & (RF_VENDOR_ID | RF_PRODUCT_ID)) != (RF_VENDOR_ID | RF_PRODUCT_ID)) {
                fields_text(f & (RF_VENDOR_ID | RF_PRODUCT_ID), where, one, sizeof(one));
                return note(x, "%s alone matches %s (the older daemon ignored it without %s)", one,
                            f & RF_VENDOR_ID ? "every product of that vendor"
                                             : "that product id of every vendor",
                            f & RF_VENDOR_ID ? (kind == DEV_PCI ? "deviceId" : "productId") : "vendorId");
        }
        if ((f & (RF_BUS | RF_PORT)) && (f & (RF_BUS | RF_PORT)) != (RF_BUS | RF_PORT))
                return note(x, "%s alone matches (the older daemon ignored it without %s)",
                            f & RF_BUS ? "bus" : "port", f & RF_BUS ? "port" : "bus");
        return 0;
}

static int parse_rule(struct ctx *x, const cJSON *obj, enum dev_kind kind, struct cfg_rule *r) {
        const cJSON *found[ELEMENTSOF(rule_fields)];
        char list[256];
        int ret;

        ret = parse_object(x, obj, rule_fields, ELEMENTSOF(rule_fields), 1u << kind, true, r, &r->fields,
                           found);
        if (ret < 0)
                return ret;
        ret = parse_enabled(x, found[R_DISABLE], found[R_ENABLE], true, &r->enabled);
        if (ret < 0)
                return ret;
        if ((r->fields & RF_PROPERTY) && !r->value)
                return fail(x, "'property' requires 'value' (the exact value to compare)");
        if (r->value && !(r->fields & RF_PROPERTY))
                return fail(x, "'value' requires 'property' (the udev property to compare)");
        if (r->fields == 0) {
                match_fields_text(1u << kind, list, sizeof(list));
                return fail(x, "a rule needs at least one match field (it would match every device): %s",
                            list);
        }
        return note_semantics(x, r, kind);
}

static int parse_rules(struct ctx *x, const cJSON *v, const char *key, enum dev_kind kind,
                       struct cfg_rule **ret, size_t *ret_n) {
        size_t mark = path_key(x, key), i = 0;
        const cJSON *item;
        long n;
        int r;

        n = get_array(x, v, "an array of rules", CFG_MAX_RULES);
        if (n < 0)
                return (int)n;
        if (x->n_rules + (size_t)n > CFG_MAX_RULES)
                return fail(x, "too many rules: at most %d in the whole configuration", CFG_MAX_RULES);
        x->n_rules += (size_t)n;
        if (n > 0) {
                *ret = calloc((size_t)n, sizeof(**ret));
                if (!*ret)
                        return oom(x);
        }
        *ret_n = (size_t)n; /* set now so cfg_free() sees partly parsed rules */
        cJSON_ArrayForEach(item, v) {
                size_t m = path_index(x, i);
                r = parse_rule(x, item, kind, &(*ret)[i]);
                if (r < 0)
                        return r;
                path_pop(x, m);
                i++;
        }
        path_pop(x, mark);
        return 0;
}

static int find_vm(struct ctx *x, const cJSON *v, const struct cfg_vm **ret) {
        const char *name;
        char shown[VALUE_SHOWN * 4 + 8];
        int r;

        r = get_string(x, v, false, &name);
        if (r < 0)
                return r;
        *ret = cfg_find_vm(x->c, name);
        if (!*ret)
                return fail(x, "unknown VM %s: expected the name of a VM listed in 'vms'",
                            describe(v, shown, sizeof(shown)));
        return 0;
}

/* targetVm and/or allowedVms -> e->vms, targetVm (the default) first. */
static int parse_targets(struct ctx *x, const cJSON *target, const cJSON *allowed, struct cfg_entry *e) {
        const struct cfg_vm *def = NULL, *vm;
        const cJSON *item;
        bool def_listed = false;
        size_t mark, i = 0;
        long n = 0;
        int r;

        if (target) {
                mark = path_key(x, "targetVm");
                r = find_vm(x, target, &def);
                if (r < 0)
                        return r;
                path_pop(x, mark);
        }
        if (allowed) {
                mark = path_key(x, "allowedVms");
                n = get_array(x, allowed, "a non-empty array of VM names", CFG_MAX_VMS);
                if (n < 0)
                        return (int)n;
                if (n == 0)
                        return fail_expected(x, allowed, "a non-empty array of VM names");
        }
        e->vms = calloc((size_t)n + 1, sizeof(*e->vms)); /* + 1: allowedVms may lack targetVm */
        if (!e->vms)
                return oom(x);
        if (def)
                e->vms[e->n_vms++] = def;
        if (!allowed)
                return 0;
        e->ask_vm = !def;
        cJSON_ArrayForEach(item, allowed) {
                size_t m = path_index(x, i++);
                r = find_vm(x, item, &vm);
                if (r < 0)
                        return r;
                bool twice = vm == def ? def_listed : false;
                for (size_t k = 0; k < e->n_vms && !twice; k++)
                        twice = vm != def && e->vms[k] == vm;
                if (twice)
                        return fail(x, "VM '%s' is listed twice", vm->name);
                if (vm == def)
                        def_listed = true;
                else
                        e->vms[e->n_vms++] = vm;
                path_pop(x, m);
        }
        path_pop(x, mark);
        if (def && !def_listed) {
                path_key(x, "targetVm");
                return fail(x, "targetVm '%s' is not one of allowedVms", def->name);
        }
        return 0;
}

static void entry_free_contents(struct cfg_entry *e) {
        free(e->description);
        free(e->tag);
        free(e->vms);
        for (size_t i = 0; i < e->n_allow; i++)
                rule_free_contents(&e->allow[i]);
        free(e->allow);
        for (size_t i = 0; i < e->n_deny; i++)
                rule_free_contents(&e->deny[i]);
        free(e->deny);
}

static int parse_entry(struct ctx *x, const cJSON *obj, enum dev_kind kind, struct cfg_entry *e) {
        const cJSON *found[ELEMENTSOF(entry_fields)];
        int r;

        r = parse_object(x, obj, entry_fields, ELEMENTSOF(entry_fields), 1u << kind, true, e, NULL, found);
        if (r < 0)
                return r;
        r = parse_enabled(x, found[E_DISABLE], found[E_ENABLE], true, &e->enabled);
        if (r < 0)
                return r;
        if (!found[E_TARGET_VM] && !found[E_ALLOWED_VMS]) {
                /* The older daemon skipped such an entry (logging an error) when its rules matched. */
                if (e->enabled) /* a disabled one routes nothing anyway */
                        r = warn(x, "no 'targetVm'%s: this entry claims nothing",
                                 kind == DEV_USB ? " or 'allowedVms'" : "");
        } else {
                r = parse_targets(x, found[E_TARGET_VM], found[E_ALLOWED_VMS], e);
        }
        if (r < 0)
                return r;
        if (!e->legacy_all_inputs && e->enabled && e->n_vms > 0 &&
            (!found[E_ALLOW] || cJSON_GetArraySize(found[E_ALLOW]) == 0))
                r = warn(x, "%s 'allow' list: this entry claims nothing", found[E_ALLOW] ? "empty" : "no");
        if (r < 0)
                return r;
        if (found[E_ALLOW]) {
                r = parse_rules(x, found[E_ALLOW], "allow", kind, &e->allow, &e->n_allow);
                if (r < 0)
                        return r;
        }
        if (found[E_DENY]) {
                r = parse_rules(x, found[E_DENY], "deny", kind, &e->deny, &e->n_deny);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The older evdevPassthrough object: one entry passing every non-USB input device. */
static int parse_legacy_evdev(struct ctx *x, const cJSON *obj) {
        static const char *const rule_keys[] = {"allow", "deny"};
        struct cfg *c = x->c;
        struct cfg_entry *e;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(rule_keys); i++)
                if (cJSON_GetObjectItemCaseSensitive(obj, rule_keys[i])) {
                        path_key(x, rule_keys[i]);
                        return fail(x,
                                    "the object form of evdevPassthrough takes no rules; "
                                    "expected an array of entries to use '%s'",
                                    rule_keys[i]);
                }
        e = calloc(1, sizeof(*e));
        if (!e)
                return oom(x);
        c->entries[DEV_EVDEV] = e;
        c->n_entries[DEV_EVDEV] = 1;
        e->legacy_all_inputs = true;
        r = parse_entry(x, obj, DEV_EVDEV, e);
        if (r < 0)
                return r;
        if (e->n_vms == 0) {
                entry_free_contents(e);
                free(e);
                c->entries[DEV_EVDEV] = NULL;
                c->n_entries[DEV_EVDEV] = 0;
        }
        return 0;
}

static int parse_section(struct ctx *x, const cJSON *v, enum dev_kind kind) {
        struct cfg *c = x->c;
        const cJSON *item;
        size_t i = 0;
        long n;
        int r;

        if (kind == DEV_EVDEV && cJSON_IsObject(v))
                return parse_legacy_evdev(x, v);
        n = get_array(x, v,
                      kind == DEV_EVDEV ? "an array of entries (or the older object form)"
                                        : "an array of entries",
                      CFG_MAX_ENTRIES);
        if (n <= 0)
                return (int)n;
        c->entries[kind] = calloc((size_t)n, sizeof(struct cfg_entry));
        if (!c->entries[kind])
                return oom(x);
        c->n_entries[kind] = (size_t)n;
        cJSON_ArrayForEach(item, v) {
                size_t mark = path_index(x, i);
                r = parse_entry(x, item, kind, &c->entries[kind][i]);
                if (r < 0)
                        return r;
                path_pop(x, mark);
                i++;
        }
        return 0;
}

static int parse_vm(struct ctx *x, const cJSON *obj, struct cfg_vm *vm) {
        const cJSON *found[ELEMENTSOF(vm_fields)];
        const char *name;
        size_t mark;
        int r;

        r = parse_object(x, obj, vm_fields, ELEMENTSOF(vm_fields), S_ALL, false, vm, NULL, found);
        if (r < 0)
                return r;

        mark = path_key(x, "name");
        r = get_string(x, found[V_NAME], false, &name);
        if (r < 0)
                return r;
        if (strlen(name) > CFG_MAX_VM_NAME ||
            strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@+-") !=
                    strlen(name))
                return fail_expected(x, found[V_NAME],
                                     "a name of letters, digits and ._:@+- (at most 64 bytes)");
        if (cfg_find_vm(x->c, name))
                return fail(x, "duplicate VM name '%s'", name);
        r = set_string(x, &vm->name, name);
        if (r < 0)
                return r;
        path_pop(x, mark);

        mark = path_key(x, "type");
        const cJSON *type = found[V_TYPE];
        if (cJSON_IsString(type) && strcmp(type->valuestring, "qemu") == 0)
                vm->type = VMM_QEMU;
        else if (cJSON_IsString(type) && strcmp(type->valuestring, "crosvm") == 0)
                vm->type = VMM_CROSVM;
        else if (cJSON_IsString(type) && strcmp(type->valuestring, "cloud-hypervisor") == 0)
                vm->type = VMM_CLOUD_HYPERVISOR;
        else
                return fail_expected(x, type, "\"qemu\", \"crosvm\" or \"cloud-hypervisor\"");
        if (vm->type == VMM_CLOUD_HYPERVISOR)
                r = warn(x,
                         "cloud-hypervisor VMs cannot be hot-plugged: accepted for cold-plug arguments "
                         "(vhotplug-api); devices claimed for '%s' stay on the host",
                         vm->name);
        if (r < 0)
                return r;
        path_pop(x, mark);
        return 0;
}

static int parse_vms(struct ctx *x, const cJSON *v) {
        struct cfg *c = x->c;
        const cJSON *item;
        long n;
        int r;

        n = get_array(x, v, "an array of VMs", CFG_MAX_VMS);
        if (n <= 0)
                return (int)n;
        c->vms = calloc((size_t)n, sizeof(*c->vms));
        if (!c->vms)
                return oom(x);
        /* n_vms grows as VMs are parsed, so cfg_find_vm() sees only earlier ones. */
        cJSON_ArrayForEach(item, v) {
                size_t mark = path_index(x, c->n_vms);
                r = parse_vm(x, item, &c->vms[c->n_vms]);
                c->n_vms++;
                if (r < 0)
                        return r;
                path_pop(x, mark);
        }
        return 0;
}

/* "/boot/" -> "/boot" */
static int add_host_mount(struct ctx *x, const char *path) {
        struct cfg_general *g = &x->c->general;
        size_t len = strlen(path);
        char *copy;

        while (len > 1 && path[len - 1] == '/')
                len--;
        for (size_t i = 0; i < g->n_host_mounts; i++)
                if (strlen(g->host_mounts[i]) == len && strncmp(g->host_mounts[i], path, len) == 0)
                        return 0;
        if (g->n_host_mounts >= CFG_MAX_HOST_MOUNTS)
                return fail(x, "too many host-required mounts: at most %d", CFG_MAX_HOST_MOUNTS);
        copy = strndup(path, len);
        if (!copy)
                return oom(x);
        g->host_mounts[g->n_host_mounts++] = copy;
        return 0;
}

static int parse_host_mounts(struct ctx *x, const cJSON *v) {
        const cJSON *item;
        const char *s;
        size_t i = 0;
        long n;
        int r;

        n = get_array(x, v, "an array of absolute paths", CFG_MAX_HOST_MOUNTS);
        if (n < 0)
                return (int)n;
        cJSON_ArrayForEach(item, v) {
                size_t mark = path_index(x, i++);
                r = get_string(x, item, false, &s);
                if (r < 0)
                        return r;
                if (s[0] != '/')
                        return fail_expected(x, item, "an absolute path");
                r = add_host_mount(x, s);
                if (r < 0)
                        return r;
                path_pop(x, mark);
        }
        return 0;
}

static int general_init(struct ctx *x) {
        struct cfg_general *g = &x->c->general;

        g->database = strdup(CFG_DEFAULT_DATABASE);
        g->crosvm = strdup(CFG_DEFAULT_CROSVM);
        g->lock_dir = strdup(CFG_DEFAULT_LOCK_DIR);
        g->state_path = strdup(CFG_DEFAULT_STATE_PATH);
        g->api.unix_socket = strdup(CFG_DEFAULT_API_SOCKET);
        g->api.host = strdup(CFG_DEFAULT_API_HOST);
        g->host_mounts = calloc(CFG_MAX_HOST_MOUNTS, sizeof(*g->host_mounts));
        if (!g->database || !g->crosvm || !g->lock_dir || !g->state_path || !g->api.unix_socket ||
            !g->api.host || !g->host_mounts)
                return oom(x);
        g->qmp_timeout_ms = CFG_DEFAULT_QMP_TIMEOUT_MS;
        g->event_timeout_ms = CFG_DEFAULT_EVENT_TIMEOUT_MS;
        g->attach_retries = CFG_DEFAULT_ATTACH_RETRIES;
        g->persistency = true;
        g->api.port = CFG_DEFAULT_API_PORT;
        g->api.unix_mode = -1;
        for (size_t i = 0; i < ELEMENTSOF(default_host_mounts); i++) {
                int r = add_host_mount(x, default_host_mounts[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* An integer from min to max (doubles hold every uint32_t exactly). */
static int get_u32(struct ctx *x, const cJSON *v, uint32_t min, uint32_t max, uint32_t *ret) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max) ||
            v->valuedouble != (double)(uint32_t)v->valuedouble) {
                char what[64];
                snprintf(what, sizeof(what), "an integer from %u to %u", min, max);
                return fail_expected(x, v, what);
        }
        *ret = (uint32_t)v->valuedouble;
        return 0;
}

static int parse_transports(struct ctx *x, const cJSON *v, unsigned *ret) {
        static const struct {
                const char *name;
                unsigned bit;
        } names[] = {{"unix", CFG_API_UNIX}, {"vsock", CFG_API_VSOCK}, {"tcp", CFG_API_TCP}};
        static const char what[] = "\"unix\", \"vsock\" or \"tcp\"";
        const cJSON *item;
        size_t i = 0, k;
        long n;

        n = get_array(x, v, "an array of \"unix\", \"vsock\" or \"tcp\"", ELEMENTSOF(names));
        if (n < 0)
                return (int)n;
        cJSON_ArrayForEach(item, v) {
                size_t mark = path_index(x, i++);
                for (k = 0; k < ELEMENTSOF(names); k++)
                        if (cJSON_IsString(item) && strcmp(item->valuestring, names[k].name) == 0)
                                break;
                if (k == ELEMENTSOF(names))
                        return fail_expected(x, item, what);
                if (*ret & names[k].bit)
                        return fail(x, "transport '%s' is listed twice", names[k].name);
                *ret |= names[k].bit;
                path_pop(x, mark);
        }
        return 0;
}

/* "0660", "660" or "0o660", as the older daemon's int(value, 8) read it. */
static int get_mode(struct ctx *x, const cJSON *v, int *ret) {
        static const char what[] = "a string of octal digits, like \"0660\"";
        const char *s;
        size_t len;

        if (!cJSON_IsString(v))
                return fail_expected(x, v, what);
        s = v->valuestring;
        if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
                s += 2;
        len = strlen(s);
        if (len == 0 || len > 5 || strspn(s, "01234567") != len || strtoul(s, NULL, 8) > 07777)
                return fail_expected(x, v, what);
        *ret = (int)strtoul(s, NULL, 8);
        return 0;
}

static int parse_cids(struct ctx *x, const cJSON *v, struct cfg_api *a) {
        const cJSON *item;
        size_t i = 0;
        long n;
        int r;

        if (cJSON_IsNull(v)) /* what the older daemon's clients and generators write for "any" */
                return 0;
        n = get_array(x, v, "an array of vsock CIDs", CFG_MAX_CIDS);
        if (n <= 0)
                return (int)n;
        a->allowed_cids = calloc((size_t)n, sizeof(*a->allowed_cids));
        if (!a->allowed_cids)
                return oom(x);
        cJSON_ArrayForEach(item, v) {
                size_t mark = path_index(x, i++);
                r = get_u32(x, item, 0, UINT32_MAX, &a->allowed_cids[a->n_allowed_cids]);
                if (r < 0)
                        return r;
                a->n_allowed_cids++;
                path_pop(x, mark);
        }
        return 0;
}

/* general.api: the older daemon's keys (its apiserver.py), validated and kept for vhotplug-api. */
static int parse_api(struct ctx *x, const cJSON *obj) {
        struct cfg_api *a = &x->c->general.api;
        const cJSON *found[ELEMENTSOF(api_fields)];
        size_t mark;
        int r;

        r = parse_object(x, obj, api_fields, ELEMENTSOF(api_fields), S_ALL, false, a, NULL, found);
        if (r < 0)
                return r;
        r = parse_enabled(x, found[A_DISABLE], found[A_ENABLE], true, &a->enabled);
        if (r < 0)
                return r;
        if (found[A_TRANSPORTS]) {
                mark = path_key(x, "transports");
                r = parse_transports(x, found[A_TRANSPORTS], &a->transports);
                if (r < 0)
                        return r;
                path_pop(x, mark);
        }
        if (found[A_PORT]) {
                mark = path_key(x, "port");
                /* vsock ports are 32-bit; TCP's are 16-bit. */
                r = get_u32(x, found[A_PORT], 1, a->transports & CFG_API_TCP ? 65535 : UINT32_MAX - 1,
                            &a->port);
                if (r < 0)
                        return r;
                path_pop(x, mark);
        }
        if (found[A_MODE]) {
                mark = path_key(x, "unixSocketMode");
                r = get_mode(x, found[A_MODE], &a->unix_mode);
                if (r < 0)
                        return r;
                path_pop(x, mark);
        }
        if (found[A_CIDS]) {
                mark = path_key(x, "allowedCids");
                r = parse_cids(x, found[A_CIDS], a);
                if (r < 0)
                        return r;
                path_pop(x, mark);
        }
        if (!a->enabled)
                return 0;
        r = note(x, NOTE_API_BUILT " (its sockets are written by vhotplug-generator)");
        if (r >= 0 && a->transports == 0)
                r = warn(x, "no 'transports': the API listens nowhere");
        if (r >= 0 && (a->transports & CFG_API_TCP))
                r = warn(x,
                         "the \"tcp\" transport is unauthenticated: anyone who reaches %.64s:%u controls "
                         "device "
                         "assignment",
                         a->host, a->port);
        return r;
}

static int parse_general(struct ctx *x, const cJSON *obj) {
        const cJSON *found[ELEMENTSOF(general_fields)];
        size_t mark;
        int r;

        r = parse_object(x, obj, general_fields, ELEMENTSOF(general_fields), S_ALL, false, &x->c->general,
                         NULL, found);
        if (r < 0)
                return r;
        if (found[G_HOST_MOUNTS]) {
                mark = path_key(x, "hostRequiredMounts");
                r = parse_host_mounts(x, found[G_HOST_MOUNTS]);
                if (r < 0)
                        return r;
                path_pop(x, mark);
        }
        if (found[G_API]) {
                mark = path_key(x, "api");
                r = parse_api(x, found[G_API]);
                if (r < 0)
                        return r;
                path_pop(x, mark);
        }
        return 0;
}

static int parse_usb(struct ctx *x, const cJSON *v) {
        return parse_section(x, v, DEV_USB);
}
static int parse_pci(struct ctx *x, const cJSON *v) {
        return parse_section(x, v, DEV_PCI);
}
static int parse_evdev(struct ctx *x, const cJSON *v) {
        return parse_section(x, v, DEV_EVDEV);
}

/* usbAuthorization as the older daemon read it: off unless enabled, hostAllow holds USB rules. */
static int parse_usb_authorization(struct ctx *x, const cJSON *obj) {
        struct cfg_usb_auth *u = &x->c->usb_auth;
        const cJSON *found[ELEMENTSOF(usb_auth_fields)];
        int r;

        r = parse_object(x, obj, usb_auth_fields, ELEMENTSOF(usb_auth_fields), S_ALL, true, u, NULL, found);
        if (r < 0)
                return r;
        r = parse_enabled(x, found[U_DISABLE], found[U_ENABLE], false, &u->enabled);
        if (r < 0)
                return r;
        if (found[U_HOST_ALLOW]) {
                r = parse_rules(x, found[U_HOST_ALLOW], "hostAllow", DEV_USB, &u->host_allow,
                                &u->n_host_allow);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int get_path(struct ctx *x, const cJSON *v, char **slot) {
        const char *s;
        int r = get_string(x, v, false, &s);

        if (r < 0)
                return r;
        if (s[0] != '/')
                return fail_expected(x, v, "an absolute path");
        return set_string(x, slot, s);
}

static int parse_acpi_table(struct ctx *x, const cJSON *obj, struct cfg_acpi_table *t) {
        const cJSON *found[ELEMENTSOF(acpi_table_fields)];
        int r;

        r = parse_object(x, obj, acpi_table_fields, ELEMENTSOF(acpi_table_fields), S_ALL, true, t, NULL,
                         found);
        if (r < 0)
                return r;
        return parse_enabled(x, found[AT_DISABLE], found[AT_ENABLE], true, &t->enabled);
}

/* A table given in the entry itself: acpiTable, setUser, setGroup beside targetVm. */
static int parse_acpi_inline(struct ctx *x, const cJSON **found, const struct cfg_acpi_entry *e,
                             struct cfg_acpi_table *t) {
        static const struct {
                int index;
                const char *key;
                size_t offset;
        } keys[] = {
                {AE_USER, "setUser", offsetof(struct cfg_acpi_table, set_user)},
                {AE_GROUP, "setGroup", offsetof(struct cfg_acpi_table, set_group)},
        };
        size_t mark = path_key(x, "acpiTable");
        int r = get_path(x, found[AE_TABLE], &t->path);
        const char *s;

        if (r < 0)
                return r;
        path_pop(x, mark);
        t->enabled = true;
        if (e->description && !(t->description = strdup(e->description)))
                return oom(x);
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                if (!found[keys[i].index])
                        continue;
                mark = path_key(x, keys[i].key);
                r = get_string(x, found[keys[i].index], false, &s);
                if (r < 0)
                        return r;
                r = set_string(x, (char **)((char *)t + keys[i].offset), s);
                if (r < 0)
                        return r;
                path_pop(x, mark);
        }
        return 0;
}

static int parse_acpi_entry(struct ctx *x, const cJSON *obj, struct cfg_acpi_entry *e, size_t *n_tables) {
        const cJSON *found[ELEMENTSOF(acpi_entry_fields)], *item;
        size_t i = 0, mark;
        long n = 0;
        int r;

        r = parse_object(x, obj, acpi_entry_fields, ELEMENTSOF(acpi_entry_fields), S_ALL, true, e, NULL,
                         found);
        if (r < 0)
                return r;
        r = parse_enabled(x, found[AE_DISABLE], found[AE_ENABLE], true, &e->enabled);
        if (r < 0)
                return r;
        if ((found[AE_USER] || found[AE_GROUP]) && !found[AE_TABLE]) {
                path_key(x, found[AE_USER] ? "setUser" : "setGroup");
                return fail(x, "'%s' belongs to a table: give 'acpiTable' beside it, or put both in 'allow'",
                            found[AE_USER] ? "setUser" : "setGroup");
        }
        if (found[AE_TARGET_VM]) {
                mark = path_key(x, "targetVm");
                r = find_vm(x, found[AE_TARGET_VM], &e->vm);
                if (r < 0)
                        return r;
                path_pop(x, mark);
        } else if (e->enabled) {
                r = warn(x, "no 'targetVm': this entry hands out no table");
                if (r < 0)
                        return r;
        }
        if (found[AE_ALLOW]) {
                mark = path_key(x, "allow");
                n = get_array(x, found[AE_ALLOW], "an array of ACPI tables", CFG_MAX_ACPI_TABLES);
                if (n < 0)
                        return (int)n;
                path_pop(x, mark);
        }
        n += found[AE_TABLE] ? 1 : 0;
        if (*n_tables + (size_t)n > CFG_MAX_ACPI_TABLES)
                return fail(x, "too many ACPI tables: at most %d in the whole configuration",
                            CFG_MAX_ACPI_TABLES);
        *n_tables += (size_t)n;
        if (n == 0)
                return 0;
        e->tables = calloc((size_t)n, sizeof(*e->tables));
        if (!e->tables)
                return oom(x);
        if (found[AE_TABLE]) {
                r = parse_acpi_inline(x, found, e, &e->tables[e->n_tables++]);
                if (r < 0)
                        return r;
        }
        if (!found[AE_ALLOW])
                return 0;
        mark = path_key(x, "allow");
        cJSON_ArrayForEach(item, found[AE_ALLOW]) {
                size_t m = path_index(x, i++);
                r = parse_acpi_table(x, item, &e->tables[e->n_tables++]);
                if (r < 0)
                        return r;
                path_pop(x, m);
        }
        path_pop(x, mark);
        return 0;
}

static int parse_acpi(struct ctx *x, const cJSON *v) {
        struct cfg *c = x->c;
        const cJSON *item;
        size_t i = 0, n_tables = 0;
        long n;
        int r;

        n = get_array(x, v, "an array of entries", CFG_MAX_ENTRIES);
        if (n <= 0)
                return (int)n;
        c->acpi = calloc((size_t)n, sizeof(*c->acpi));
        if (!c->acpi)
                return oom(x);
        c->n_acpi = (size_t)n;
        cJSON_ArrayForEach(item, v) {
                size_t mark = path_index(x, i);
                r = parse_acpi_entry(x, item, &c->acpi[i], &n_tables);
                if (r < 0)
                        return r;
                path_pop(x, mark);
                i++;
        }
        return 0;
}

static int parse_root(struct ctx *x, const cJSON *root) {
        const cJSON *found[ELEMENTSOF(top_fields)];
        char got[64];
        int r;

        if (!cJSON_IsObject(root))
                return fail(x, "expected a JSON object at the top level, got %s",
                            describe(root, got, sizeof(got)));
        r = general_init(x);
        if (r < 0)
                return r;
        r = parse_object(x, root, top_fields, ELEMENTSOF(top_fields), S_ALL, false, NULL, NULL, found);
        if (r < 0)
                return r;
        /* vms before the sections, which refer to them by name. */
        const struct {
                int index;
                int (*parse)(struct ctx *, const cJSON *);
        } order[] = {
                {T_GENERAL, parse_general},
                {T_VMS, parse_vms},
                {T_USB_AUTHORIZATION, parse_usb_authorization},
                {T_ACPI, parse_acpi},
                {T_USB, parse_usb},
                {T_PCI, parse_pci},
                {T_EVDEV, parse_evdev},
        };
        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                const cJSON *v = found[order[i].index];
                if (!v)
                        continue;
                size_t mark = path_key(x, top_fields[order[i].index].key);
                r = order[i].parse(x, v);
                if (r < 0)
                        return r;
                path_pop(x, mark);
        }
        return 0;
}

/* ---- checks that depend on the host (--check-config): warnings, never refusals, since
 * configurations are generated on one machine and checked on another (SPEC §10) */

/* Whether rule r keeps a USB keyboard on the host: it holds for a boot keyboard (a device of
 * class 0 with an interface 3/1/1) of any make, plugged into any port. */
static bool keeps_any_keyboard(const struct cfg_rule *r) {
        unsigned f = r->fields;

        /* ids, serial and place single out some keyboards; a keyboard's interface class is
         * valid, so driverPath never holds for it */
        if (!r->enabled || (f & (RF_VENDOR_ID | RF_PRODUCT_ID | RF_SERIAL | RF_BUS | RF_PORT | RF_PORT_PATH |
                                 RF_DRIVER_PATH)))
                return false;
        /* anchored at the start only: a pattern that matches "" matches every name */
        if ((f & RF_VENDOR_NAME) && regexec(&r->vendor_name, "", 0, NULL, 0) != 0)
                return false;
        if ((f & RF_PRODUCT_NAME) && regexec(&r->product_name, "", 0, NULL, 0) != 0)
                return false;
        if (((f & RF_DEV_CLASS) && r->dev_class != 0) || ((f & RF_DEV_SUBCLASS) && r->dev_subclass != 0) ||
            ((f & RF_DEV_PROTOCOL) && r->dev_protocol != 0))
                return false;
        if (((f & RF_IF_CLASS) && r->if_class != 3) || ((f & RF_IF_SUBCLASS) && r->if_subclass != 1) ||
            ((f & RF_IF_PROTOCOL) && r->if_protocol != 1))
                return false;
        return !(f & RF_REMOVABLE) || (r->removable & (1u << DEV_REMOVABLE_REMOVABLE));
}

/* Warns at path (one or two keys) with what. */
__attribute__((format(printf, 4, 5))) static int warn_at(struct ctx *x, const char *key1, const char *key2,
                                                         const char *fmt, ...) {
        size_t mark = path_key(x, key1);
        char what[512];
        va_list ap;

        if (key2)
                path_key(x, key2);
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        int r = warn(x, "%s", what);
        path_pop(x, mark);
        return r;
}

static bool user_exists(const char *name) {
        char buf[4096];
        struct passwd pw, *res = NULL;
        return getpwnam_r(name, &pw, buf, sizeof(buf), &res) == 0 && res;
}

static bool group_exists(const char *name) {
        char buf[8192];
        struct group gr, *res = NULL;
        return getgrnam_r(name, &gr, buf, sizeof(buf), &res) == 0 && res;
}

/* "" when path is a readable regular file, else why not. */
static const char *file_problem(const char *path) {
        struct stat st;
        if (stat(path, &st) < 0)
                return errno == ENOENT ? "does not exist" : "cannot be read";
        return S_ISREG(st.st_mode) ? "" : "is not a regular file";
}

static bool uses_driver_path(const struct cfg *c) {
        for (size_t i = 0; i < c->usb_auth.n_host_allow; i++)
                if (c->usb_auth.host_allow[i].fields & RF_DRIVER_PATH)
                        return true;
        for (size_t i = 0; i < c->n_entries[DEV_USB]; i++) {
                const struct cfg_entry *e = &c->entries[DEV_USB][i];
                for (size_t k = 0; k < e->n_allow; k++)
                        if (e->allow[k].fields & RF_DRIVER_PATH)
                                return true;
                for (size_t k = 0; k < e->n_deny; k++)
                        if (e->deny[k].fields & RF_DRIVER_PATH)
                                return true;
        }
        return false;
}

static int check_host(struct ctx *x) {
        const struct cfg *c = x->c;
        const struct cfg_general *g = &c->general;
        const char *why;
        bool crosvm_vm = false;
        int r = 0;

        if (g->api.unix_user && !user_exists(g->api.unix_user))
                r = warn_at(x, "general", "api", "unixSocketUser: no user '%.64s' on this host",
                            g->api.unix_user);
        if (r >= 0 && g->api.unix_group && !group_exists(g->api.unix_group))
                r = warn_at(x, "general", "api", "unixSocketGroup: no group '%.64s' on this host",
                            g->api.unix_group);
        if (r >= 0 && g->ovmf_code && *(why = file_problem(g->ovmf_code)))
                r = warn_at(x, "general", "ovmfCode", "%.200s %s", g->ovmf_code, why);
        if (r >= 0 && g->ovmf_vars && *(why = file_problem(g->ovmf_vars)))
                r = warn_at(x, "general", "ovmfVars", "%.200s %s", g->ovmf_vars, why);
        for (size_t i = 0; i < c->n_vms; i++)
                crosvm_vm |= c->vms[i].type == VMM_CROSVM;
        if (r >= 0 && crosvm_vm && strchr(g->crosvm, '/') && access(g->crosvm, X_OK) < 0)
                r = warn_at(x, "general", "crosvm", "%.200s is not an executable file here", g->crosvm);
        if (r >= 0 && uses_driver_path(c)) {
                struct mod_ctx *m = NULL;
                struct utsname u;
                char dir[PATH_MAX];
                int e = mod_ctx_new(g->modules_dir, &m);

                mod_ctx_free(m);
                snprintf(dir, sizeof(dir), "%s",
                         g->modules_dir ? g->modules_dir : "/lib/modules/`uname -r`");
                if (!g->modules_dir && uname(&u) == 0)
                        snprintf(dir, sizeof(dir), "/lib/modules/%.64s", u.release);
                if (e == -ENOPKG)
                        r = warn_at(x, "general", "modulesDir",
                                    "driverPath rules cannot match: libkmod (" VHP_LIBKMOD_SONAME
                                    ") cannot be loaded");
                else if (e < 0)
                        r = warn_at(x, "general", "modulesDir",
                                    "driverPath rules cannot match: no kernel module index "
                                    "(modules.alias.bin) in %.200s: %s",
                                    dir, strerror(-e));
        }
        for (size_t i = 0; r >= 0 && i < c->n_acpi; i++) {
                size_t mark = path_key(x, "acpiPassthrough");
                path_index(x, i);
                for (size_t k = 0; r >= 0 && k < c->acpi[i].n_tables; k++) {
                        const struct cfg_acpi_table *t = &c->acpi[i].tables[k];
                        if (*(why = file_problem(t->path)))
                                r = warn(x, "acpiTable %.200s %s", t->path, why);
                        if (r >= 0 && t->set_user && !user_exists(t->set_user))
                                r = warn(x, "setUser: no user '%.64s' on this host", t->set_user);
                        if (r >= 0 && t->set_group && !group_exists(t->set_group))
                                r = warn(x, "setGroup: no group '%.64s' on this host", t->set_group);
                }
                path_pop(x, mark);
        }
        if (r < 0 || !c->usb_auth.enabled)
                return r;
        for (size_t i = 0; i < c->usb_auth.n_host_allow; i++)
                if (keeps_any_keyboard(&c->usb_auth.host_allow[i]))
                        return 0;
        return warn_at(
                x, "usbAuthorization", NULL,
                "no hostAllow rule keeps a USB keyboard on the host: a keyboard that no VM claims stays "
                "unauthorized (add {\"interfaceClass\": 3, \"interfaceProtocol\": 1} to hostAllow)");
}

/* Line and column (1-based, in characters) of byte offset off. */
static void line_col(const char *text, size_t off, unsigned *ret_line, unsigned *ret_col) {
        unsigned line = 1, col = 1;

        for (size_t i = 0; i < off; i++) {
                if (text[i] == '\n') {
                        line++;
                        col = 1;
                } else if (((unsigned char)text[i] & 0xc0) != 0x80)
                        col++;
        }
        *ret_line = line;
        *ret_col = col;
}

static int syntax_error(const char *name, const char *text, size_t len, size_t off, const char *what,
                        struct cfg_error *err) {
        char near[16 * 4 + 8];
        unsigned line, col;

        if (off > len)
                off = len;
        line_col(text, off, &line, &col);
        if (off < len) {
                char snippet[17];
                snprintf(snippet, sizeof(snippet), "%s", text + off);
                escape(snippet, 16, near, sizeof(near));
                snprintf(err->msg, sizeof(err->msg), "%.200s:%u:%u: %s near \"%s\"", name, line, col, what,
                         near);
        } else
                snprintf(err->msg, sizeof(err->msg), "%.200s:%u:%u: %s at the end of the file", name, line,
                         col, what);
        return -EINVAL;
}

static int parse_text(const char *text, size_t len, const char *name, unsigned flags, struct cfg **ret,
                      struct cfg_error *err) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_cjson_ cJSON *root = NULL;
        const char *end = NULL, *nul;
        struct ctx x = {.file = name, .flags = flags, .err = err};
        size_t off;
        int r;

        nul = memchr(text, '\0', len);
        if (nul)
                return syntax_error(name, text, len, (size_t)(nul - text), "NUL byte in the JSON text", err);
        /* cJSON needs a NUL-terminated buffer even when given a length. */
        buf = malloc(len + 1);
        if (!buf) {
                snprintf(err->msg, sizeof(err->msg), "%.200s: out of memory", name);
                return -ENOMEM;
        }
        memcpy(buf, text, len);
        buf[len] = '\0';
        if (strspn(buf, " \t\r\n") == len)
                return syntax_error(name, buf, len, len, "empty file: expected a JSON object", err);
        root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
        if (!root)
                return syntax_error(name, buf, len, end ? (size_t)(end - buf) : 0, "JSON syntax error", err);
        end += strspn(end, " \t\r\n");
        if (*end)
                return syntax_error(name, buf, len, (size_t)(end - buf),
                                    "unexpected text after the JSON value", err);
        off = json_find_escaped_nul(buf, len);
        if (off < len)
                return syntax_error(name, buf, len, off, "\\u0000 (a NUL character) inside a string", err);

        x.c = calloc(1, sizeof(*x.c));
        if (!x.c)
                return oom(&x);
        x.c->path = strdup(name);
        r = x.c->path ? parse_root(&x, root) : oom(&x);
        if (r >= 0 && (flags & CFG_CHECK_HOST))
                r = check_host(&x);
        if (r < 0) {
                cfg_free(x.c);
                return r;
        }
        *ret = x.c;
        return 0;
}

int cfg_load_string_flags(const char *text, size_t len, const char *name, unsigned flags, struct cfg **ret,
                          struct cfg_error *err) {
        struct cfg_error dummy;

        return parse_text(text, len, name ? name : "<string>", flags, ret, err ? err : &dummy);
}

int cfg_load_string(const char *text, size_t len, const char *name, struct cfg **ret,
                    struct cfg_error *err) {
        return cfg_load_string_flags(text, len, name, 0, ret, err);
}

int cfg_load(const char *path, unsigned flags, struct cfg **ret, struct cfg_error *err) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *text = NULL;
        struct cfg_error dummy;
        struct stat st;
        size_t len = 0;

        if (!err)
                err = &dummy;
        /* O_NONBLOCK: opening a FIFO must not hang; it is refused below anyway. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                int e = errno;
                if (e == ENOENT)
                        snprintf(err->msg, sizeof(err->msg), "%.200s: no such file", path);
                else
                        snprintf(err->msg, sizeof(err->msg), "%.200s: cannot open: %s", path, strerror(e));
                return -e;
        }
        if (fstat(fd, &st) < 0) {
                int e = errno;
                snprintf(err->msg, sizeof(err->msg), "%.200s: cannot stat: %s", path, strerror(e));
                return -e;
        }
        if (!S_ISREG(st.st_mode)) {
                snprintf(err->msg, sizeof(err->msg), "%.200s: not a regular file", path);
                return -EINVAL;
        }
        if (!(flags & CFG_NO_STRICT_PERMS)) {
                if (st.st_uid != 0) {
                        snprintf(err->msg, sizeof(err->msg),
                                 "%.200s: refusing to read: owned by uid %u, not by root", path,
                                 (unsigned)st.st_uid);
                        return -EPERM;
                }
                if (st.st_mode & (S_IWGRP | S_IWOTH)) {
                        snprintf(err->msg, sizeof(err->msg),
                                 "%.200s: refusing to read: writable by group or others (mode %04o; chmod "
                                 "go-w)",
                                 path, (unsigned)(st.st_mode & 07777));
                        return -EPERM;
                }
        }
        if (st.st_size > (off_t)CFG_MAX_FILE_SIZE)
                goto too_big;

        /* Read at most one byte past the limit: the file may grow after fstat(). */
        text = malloc((size_t)st.st_size + 1);
        if (!text) {
                snprintf(err->msg, sizeof(err->msg), "%.200s: out of memory", path);
                return -ENOMEM;
        }
        size_t cap = (size_t)st.st_size + 1;
        for (;;) {
                if (len == cap) {
                        if (cap > CFG_MAX_FILE_SIZE)
                                goto too_big;
                        size_t ncap = cap * 2 > CFG_MAX_FILE_SIZE + 1 ? CFG_MAX_FILE_SIZE + 1 : cap * 2;
                        char *p = realloc(text, ncap);
                        if (!p) {
                                snprintf(err->msg, sizeof(err->msg), "%.200s: out of memory", path);
                                return -ENOMEM;
                        }
                        text = p;
                        cap = ncap;
                }
                ssize_t n = read(fd, text + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int e = errno;
                        snprintf(err->msg, sizeof(err->msg), "%.200s: cannot read: %s", path, strerror(e));
                        return -e;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        if (len > CFG_MAX_FILE_SIZE)
                goto too_big;
        return parse_text(text, len, path, flags, ret, err);

too_big:
        snprintf(err->msg, sizeof(err->msg),
                 "%.200s: file too large: more than %u bytes (the limit is %u MiB)", path, CFG_MAX_FILE_SIZE,
                 CFG_MAX_FILE_SIZE >> 20);
        return -EFBIG;
}

void cfg_free(struct cfg *c) {
        if (!c)
                return;
        for (int k = 0; k < DEV_KIND_MAX; k++) {
                for (size_t i = 0; i < c->n_entries[k]; i++)
                        entry_free_contents(&c->entries[k][i]);
                free(c->entries[k]);
        }
        for (size_t i = 0; i < c->n_vms; i++) {
                free(c->vms[i].name);
                free(c->vms[i].socket);
        }
        free(c->vms);
        for (size_t i = 0; i < c->n_acpi; i++) {
                for (size_t k = 0; k < c->acpi[i].n_tables; k++) {
                        struct cfg_acpi_table *t = &c->acpi[i].tables[k];
                        free(t->description);
                        free(t->path);
                        free(t->set_user);
                        free(t->set_group);
                }
                free(c->acpi[i].tables);
                free(c->acpi[i].description);
        }
        free(c->acpi);
        for (size_t i = 0; i < c->usb_auth.n_host_allow; i++)
                rule_free_contents(&c->usb_auth.host_allow[i]);
        free(c->usb_auth.host_allow);
        free(c->general.database);
        free(c->general.crosvm);
        free(c->general.lock_dir);
        free(c->general.modules_dir);
        free(c->general.ovmf_code);
        free(c->general.ovmf_vars);
        free(c->general.state_path);
        free(c->general.api.unix_socket);
        free(c->general.api.unix_user);
        free(c->general.api.unix_group);
        free(c->general.api.host);
        free(c->general.api.allowed_cids);
        for (size_t i = 0; i < c->general.n_host_mounts; i++)
                free(c->general.host_mounts[i]);
        free(c->general.host_mounts);
        for (size_t i = 0; i < c->n_warnings; i++)
                free(c->warnings[i]);
        free(c->warnings);
        for (size_t i = 0; i < c->n_notes; i++)
                free(c->notes[i]);
        free(c->notes);
        free(c->path);
        free(c);
}

const struct cfg_vm *cfg_find_vm(const struct cfg *c, const char *name) {
        if (!c || !name)
                return NULL;
        for (size_t i = 0; i < c->n_vms; i++)
                if (c->vms[i].name && strcmp(c->vms[i].name, name) == 0)
                        return &c->vms[i];
        return NULL;
}

const char *cfg_section_name(enum dev_kind k) {
        return k >= 0 && k < DEV_KIND_MAX ? section_names[k] : NULL;
}

bool cfg_vm_can_hotplug(const struct cfg_vm *vm) {
        return vm && (vm->type == VMM_QEMU || vm->type == VMM_CROSVM);
}

const char *cfg_vm_type_name(enum vmm_type t) {
        switch (t) {
        case VMM_QEMU:
                return "qemu";
        case VMM_CROSVM:
                return "crosvm";
        case VMM_CLOUD_HYPERVISOR:
                return "cloud-hypervisor";
        }
        return NULL;
}
