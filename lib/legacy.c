#include "legacy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup-types.h"
#include "errmsg.h"
#include "util.h"

void legacy_state_clear(struct legacy_state *s) {
        for (size_t i = 0; i < s->n; i++) {
                free(s->choices[i].key);
                free(s->choices[i].vm);
        }
        free(s->choices);
        for (size_t i = 0; i < s->n_skipped; i++)
                free(s->skipped[i]);
        free(s->skipped);
        *s = (struct legacy_state){0};
}

__attribute__((format(printf, 2, 3))) static void skip(struct legacy_state *s, const char *fmt, ...) {
        char *msg = NULL, **v;
        va_list ap;

        if (s->n_skipped >= 100)
                return; /* enough to tell what is wrong */
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        v = msg ? realloc(s->skipped, (s->n_skipped + 1) * sizeof(*v)) : NULL;
        if (!v) {
                free(msg);
                return;
        }
        s->skipped = v;
        s->skipped[s->n_skipped++] = msg;
}

/* Our key for an old one ("usb-046d:c52b:ABC", "usb-046d:c52b:None", "pci-0000:00:14.3"), or NULL
 * when it has another form. */
static char *key_of(const char *old) {
        char pci[PCI_ADDRESS_LEN], *key = NULL;
        uint16_t vid, pid;
        char v[5], p[5];

        if (strncmp(old, "pci-", 4) == 0)
                return pci_address_normalize(old + 4, pci) == 0 && asprintf(&key, "pci:%s", pci) >= 0 ? key
                                                                                                      : NULL;
        if (strncmp(old, "usb-", 4) != 0 || strlen(old) < 14 || old[8] != ':' || old[13] != ':')
                return NULL;
        memcpy(v, old + 4, 4);
        memcpy(p, old + 9, 4);
        v[4] = p[4] = '\0';
        if (parse_hex4(v, &vid) < 0 || parse_hex4(p, &pid) < 0 || strlen(old + 14) > DEV_STR_MAX)
                return NULL;
        /* Without a serial the older daemon knew a device by its ids alone: any port will do. */
        if (strcmp(old + 14, "None") == 0 || !old[14])
                return asprintf(&key, "usb:%04x:%04x@*", vid, pid) >= 0 ? key : NULL;
        return asprintf(&key, "usb:%04x:%04x:%s", vid, pid, old + 14) >= 0 ? key : NULL;
}

static struct legacy_choice *find(struct legacy_state *s, const char *key) {
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->choices[i].key, key) == 0)
                        return &s->choices[i];
        return NULL;
}

/* The choice for key, added when new. NULL when out of memory or full. */
static struct legacy_choice *get(struct legacy_state *s, char *key) {
        struct legacy_choice *c = find(s, key), *v;

        if (c) {
                free(key);
                return c;
        }
        if (s->n >= LEGACY_MAX_ENTRIES || !(v = realloc(s->choices, (s->n + 1) * sizeof(*v)))) {
                free(key);
                return NULL;
        }
        s->choices = v;
        c = &v[s->n++];
        *c = (struct legacy_choice){.key = key};
        return c;
}

/* Whether some USB entry lists vm among its allowedVms (only such entries had choices). */
static bool choosable(const struct cfg *c, const char *vm) {
        for (size_t i = 0; i < c->n_entries[DEV_USB]; i++)
                for (size_t j = 0; j < c->entries[DEV_USB][i].n_vms; j++)
                        if (strcmp(c->entries[DEV_USB][i].vms[j]->name, vm) == 0)
                                return true;
        return false;
}

static int read_selected(const cJSON *sel, const struct cfg *c, struct legacy_state *s) {
        const cJSON *e;

        if (!sel)
                return 0;
        if (!cJSON_IsObject(sel))
                return -EINVAL;
        cJSON_ArrayForEach(e, sel) {
                char *key = key_of(e->string);
                const char *vm = cJSON_GetStringValue(e);
                struct legacy_choice *ch;

                if (!key || !vm || !cfg_find_vm(c, vm) || !choosable(c, vm)) {
                        skip(s, "selected_vms: \"%.64s\": %s", e->string,
                             !key  ? "not a device key of the form usb-VID:PID:SERIAL or pci-ADDRESS"
                             : !vm ? "the VM is not a string"
                             : !cfg_find_vm(c, vm) ? "no such VM in the configuration"
                                                   : "no entry lets a user choose that VM");
                        free(key);
                        continue;
                }
                if (!(ch = get(s, key)) || (!ch->vm && !(ch->vm = strdup(vm))))
                        return -ENOMEM;
        }
        return 0;
}

static int read_disconnected(const cJSON *dis, struct legacy_state *s) {
        const cJSON *e;

        if (!dis)
                return 0;
        if (!cJSON_IsArray(dis))
                return -EINVAL;
        cJSON_ArrayForEach(e, dis) {
                const char *old = cJSON_GetStringValue(e);
                char *key = old ? key_of(old) : NULL;
                struct legacy_choice *ch;

                if (!key) {
                        skip(s, "disconnected_devices: %s%.64s%s: not a device key", old ? "\"" : "",
                             old ? old : "(not a string)", old ? "\"" : "");
                        continue;
                }
                if (!(ch = get(s, key)))
                        return -ENOMEM;
                ch->keep_detached = true;
        }
        return 0;
}

int legacy_read_state(const char *path, const struct cfg *c, struct legacy_state *ret, char **ret_error) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        _cleanup_cjson_ cJSON *root = NULL;
        _cleanup_free_ char *text = NULL;
        struct legacy_state s = {0};
        struct stat st;
        ssize_t n;
        int r;

        if (fd < 0)
                return errno == ENOENT ? -ENOENT
                                       : errmsg_set(ret_error, -errno, "%s: %s", path, strerror(errno));
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return errmsg_set(ret_error, -EINVAL, "%s: not a regular file", path);
        if (st.st_size > LEGACY_MAX_FILE)
                return errmsg_set(ret_error, -EFBIG, "%s: larger than %u bytes", path, LEGACY_MAX_FILE);
        text = malloc((size_t)st.st_size + 1);
        if (!text)
                return -ENOMEM;
        n = read(fd, text, (size_t)st.st_size);
        if (n < 0)
                return errmsg_set(ret_error, -errno, "%s: %s", path, strerror(errno));
        text[n] = '\0';
        root = cJSON_ParseWithLength(text, (size_t)n);
        if (!cJSON_IsObject(root))
                return errmsg_set(ret_error, -EINVAL, "%s: not a JSON object (a corrupt state file)", path);
        r = read_selected(cJSON_GetObjectItemCaseSensitive(root, "selected_vms"), c, &s);
        if (r == -EINVAL)
                errmsg_set(ret_error, r, "%s: selected_vms is not an object", path);
        if (r >= 0) {
                r = read_disconnected(cJSON_GetObjectItemCaseSensitive(root, "disconnected_devices"), &s);
                if (r == -EINVAL)
                        errmsg_set(ret_error, r, "%s: disconnected_devices is not an array", path);
        }
        if (r < 0) {
                legacy_state_clear(&s);
                return r;
        }
        *ret = s;
        return 0;
}
