/* Host side of PCI passthrough: IOMMU groups and vfio-pci binding through sysfs. */
#include "vfio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "util.h"
#include "errmsg.h"

#define NAME_MAX_DRIVER 64 /* longest driver name taken from a driver link */
#define POLL_NS (10 * 1000 * 1000)

__attribute__((format(printf, 4, 5))) static int path_fmt(char *buf, size_t len, const char *root,
                                                          const char *fmt, ...) {
        va_list ap;
        int n, m;

        n = snprintf(buf, len, "%s", root ? root : "");
        if (n < 0 || (size_t)n >= len)
                return -ENAMETOOLONG;
        va_start(ap, fmt);
        m = vsnprintf(buf + n, len - (size_t)n, fmt, ap);
        va_end(ap);
        if (m < 0 || (size_t)m >= len - (size_t)n)
                return -ENAMETOOLONG;
        return 0;
}

/* Basename of a symlink's target into buf. */
static int read_link_base(const char *path, char *buf, size_t len) {
        char target[PATH_MAX];
        const char *base;
        ssize_t n;

        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return -errno;
        target[n] = '\0';
        while (n > 0 && target[n - 1] == '/')
                target[--n] = '\0';
        base = strrchr(target, '/');
        base = base ? base + 1 : target;
        if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strlen(base) >= len)
                return -EINVAL;
        memcpy(buf, base, strlen(base) + 1);
        return 0;
}

/* Writes value and a newline in one write(), as `echo value > path` does: the kernel strips the
 * newline, and "" (a lone newline) clears driver_override. */
static int write_attr(const char *path, const char *value) {
        _cleanup_close_ int fd = -1;
        char buf[128];
        size_t len;
        ssize_t n;

        len = (size_t)snprintf(buf, sizeof(buf), "%s\n", value);
        if (len >= sizeof(buf))
                return -EINVAL;
        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        n = write(fd, buf, len);
        if (n < 0)
                return -errno;
        if ((size_t)n != len)
                return -EIO;
        if (close(TAKE_FD(fd)) < 0)
                return -errno;
        return 0;
}

static int read_attr(const char *path, char *buf, size_t len) {
        _cleanup_close_ int fd = -1;
        ssize_t n;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, len - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        return 0;
}

static bool dev_exists(const char *root, const char *addr) {
        char path[PATH_MAX];
        struct stat st;

        return path_fmt(path, sizeof(path), root, "/sys/bus/pci/devices/%s", addr) == 0 &&
               stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The driver a device is bound to into buf ("" when none). */
static int current_driver(const char *root, const char *addr, char *buf, size_t len) {
        char path[PATH_MAX];
        int r;

        r = path_fmt(path, sizeof(path), root, "/sys/bus/pci/devices/%s/driver", addr);
        if (r < 0)
                return r;
        r = read_link_base(path, buf, len);
        if (r == -ENOENT) {
                buf[0] = '\0';
                return 0;
        }
        return r;
}

int vfio_driver(const char *root, const char *pci_addr, char *buf, size_t len) {
        char addr[PCI_ADDRESS_LEN];
        int r = pci_address_normalize(pci_addr, addr);

        if (r < 0)
                return r;
        if (!dev_exists(root, addr))
                return -ENODEV;
        return current_driver(root, addr, buf, len);
}

/* 1 for a PCI-to-PCI bridge (class 0x0604), 0 otherwise or when the class cannot be read. */
static int is_bridge(const char *root, const char *addr) {
        char path[PATH_MAX], buf[32], *end;
        unsigned long cls;

        if (path_fmt(path, sizeof(path), root, "/sys/bus/pci/devices/%s/class", addr) < 0 ||
            read_attr(path, buf, sizeof(buf)) < 0)
                return 0;
        errno = 0;
        cls = strtoul(buf, &end, 16);
        if (errno || end == buf)
                return 0;
        return (cls >> 8) == 0x0604;
}

static int group_of(const char *root, const char *addr) {
        char path[PATH_MAX], name[32], *end;
        long g;
        int r;

        r = path_fmt(path, sizeof(path), root, "/sys/bus/pci/devices/%s/iommu_group", addr);
        if (r < 0)
                return r;
        r = read_link_base(path, name, sizeof(name));
        if (r == -ENOENT)
                return dev_exists(root, addr) ? -EOPNOTSUPP : -ENODEV;
        if (r < 0)
                return r;
        errno = 0;
        g = strtol(name, &end, 10);
        if (errno || *end || end == name || g < 0 || g > INT_MAX)
                return -EINVAL;
        return (int)g;
}

int vfio_iommu_group(const char *root, const char *pci_addr) {
        char addr[PCI_ADDRESS_LEN];
        int r;

        r = pci_address_normalize(pci_addr, addr);
        if (r < 0)
                return r;
        return group_of(root, addr);
}

static int strv_push(char ***strv, size_t *n, const char *s) {
        char **v;

        if (*n >= VFIO_MAX_GROUP)
                return -E2BIG;
        v = realloc(*strv, (*n + 2) * sizeof(char *));
        if (!v)
                return -ENOMEM;
        *strv = v;
        v[*n] = strdup(s);
        if (!v[*n])
                return -ENOMEM;
        v[++*n] = NULL;
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects the PCI device names in directory path (root-prefixed) into strv. With check_group, only
 * those whose iommu_group link names group (a scan of all PCI devices); else all of them (the
 * group's own directory). -ENOENT when the directory is missing. */
static int members_scan(const char *root, const char *path, int group, bool check_group, char ***strv,
                        size_t *n) {
        _cleanup_closedir_ DIR *d = NULL;
        char full[PATH_MAX], addr[PCI_ADDRESS_LEN];
        struct dirent *de;
        int r;

        r = path_fmt(full, sizeof(full), root, "%s", path);
        if (r < 0)
                return r;
        d = opendir(full);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                if (pci_address_normalize(de->d_name, addr) < 0 || strcmp(addr, de->d_name) != 0)
                        continue; /* not a PCI device name */
                if (check_group && group_of(root, addr) != group)
                        continue;
                r = strv_push(strv, n, addr);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Words a failure to find a device's IOMMU group (or its members). */
static int group_error(char **ret_error, int r, const char *addr) {
        if (r == -ENODEV)
                return errmsg_set(ret_error, r, "PCI device %s not found", addr);
        if (r == -EOPNOTSUPP)
                return errmsg_set(ret_error, r, "PCI device %s has no IOMMU group (is the IOMMU enabled?)",
                                  addr);
        return errmsg_set(ret_error, r, "cannot read the IOMMU group of %s: %s", addr, strerror(-r));
}

int vfio_group_members(const char *root, const char *pci_addr, char ***ret, size_t *ret_n) {
        _cleanup_strv_ char **strv = NULL;
        char addr[PCI_ADDRESS_LEN], dir[64];
        size_t n = 0;
        int group, r;

        r = pci_address_normalize(pci_addr, addr);
        if (r < 0)
                return r;
        group = group_of(root, addr);
        if (group < 0)
                return group;
        /* The kernel lists a group's members in /sys/kernel/iommu_groups/N/devices; without that
         * directory, every PCI device's iommu_group link tells. */
        snprintf(dir, sizeof(dir), "/sys/kernel/iommu_groups/%d/devices", group);
        r = members_scan(root, dir, group, false, &strv, &n);
        if (r == -ENOENT && n == 0)
                r = members_scan(root, "/sys/bus/pci/devices", group, true, &strv, &n);
        if (r < 0)
                return r;
        if (n == 0) {
                /* Neither source lists it, yet the device has a group: it is its only member. */
                r = strv_push(&strv, &n, addr);
                if (r < 0)
                        return r;
        }
        qsort(strv, n, sizeof(char *), cmp_str);
        *ret = TAKE_PTR(strv);
        if (ret_n)
                *ret_n = n;
        return 0;
}

void vfio_plan_clear(struct vfio_plan *plan) {
        if (!plan)
                return;
        for (size_t i = 0; i < plan->n; i++) {
                free(plan->members[i].addr);
                free(plan->members[i].driver);
        }
        free(plan->members);
        plan->members = NULL;
        plan->n = 0;
        plan->group = -1;
}

static int plan_add(const char *root, struct vfio_plan *p, const char *addr) {
        char drv[NAME_MAX_DRIVER];
        struct vfio_member *m;
        int r;

        r = current_driver(root, addr, drv, sizeof(drv));
        if (r < 0)
                return r;
        m = realloc(p->members, (p->n + 1) * sizeof(*m));
        if (!m)
                return -ENOMEM;
        p->members = m;
        m = &p->members[p->n];
        m->addr = strdup(addr);
        m->driver = drv[0] ? strdup(drv) : NULL;
        if (!m->addr || (drv[0] && !m->driver)) {
                free(m->addr);
                free(m->driver);
                return -ENOMEM;
        }
        p->n++;
        return 0;
}

/* Appends ", ADDR" or ", ADDR (DRIVER)" to a malloc'd list. */
static int list_append(char **list, const char *addr, const char *driver) {
        char *s;
        int r;

        if (driver)
                r = asprintf(&s, "%s%s%s (bound to %s)", *list ? *list : "", *list ? ", " : "", addr,
                             driver);
        else
                r = asprintf(&s, "%s%s%s", *list ? *list : "", *list ? ", " : "", addr);
        if (r < 0)
                return -ENOMEM;
        free(*list);
        *list = s;
        return 0;
}

static bool driver_is_vfio_safe(const char *drv) {
        /* No driver, vfio-pci, or pci-stub (which never does DMA): the group stays viable. */
        return !drv[0] || strcmp(drv, VFIO_DRIVER) == 0 || strcmp(drv, "pci-stub") == 0;
}

int vfio_prepare(const char *root, const char *pci_addr, const struct vfio_policy *policy,
                 struct vfio_plan *ret, char **ret_error) {
        _cleanup_strv_ char **members = NULL;
        _cleanup_free_ char *others = NULL, *busy = NULL;
        struct vfio_plan plan = {.group = -1};
        struct vfio_policy none = {0};
        char addr[PCI_ADDRESS_LEN], drv[NAME_MAX_DRIVER];
        size_t n, n_others = 0;
        int r;

        if (!policy)
                policy = &none;
        r = pci_address_normalize(pci_addr, addr);
        if (r < 0)
                return errmsg_set(ret_error, r, "invalid PCI address '%.64s'", pci_addr ? pci_addr : "");
        r = vfio_group_members(root, addr, &members, &n);
        if (r < 0)
                return group_error(ret_error, r, addr);
        if (is_bridge(root, addr))
                return errmsg_set(ret_error, -EINVAL,
                                  "PCI device %s is a bridge; bridges are not passed through", addr);
        plan.group = group_of(root, addr);
        if (plan.group < 0)
                return errmsg_set(ret_error, plan.group, "cannot read the IOMMU group of %s: %s", addr,
                                  strerror(-plan.group));

        for (size_t i = 0; i < n; i++) {
                if (strcmp(members[i], addr) == 0 || is_bridge(root, members[i]))
                        continue;
                n_others++;
                r = current_driver(root, members[i], drv, sizeof(drv));
                if (r < 0)
                        return errmsg_set(ret_error, r, "cannot read the driver of %s: %s", members[i],
                                          strerror(-r));
                if (list_append(&others, members[i], NULL) < 0 ||
                    (!driver_is_vfio_safe(drv) && list_append(&busy, members[i], drv) < 0))
                        return errmsg_set(ret_error, -ENOMEM, "out of memory");
        }
        if (n_others > 0 && policy->skip_if_shared)
                return errmsg_set(ret_error, -EXDEV,
                                  "IOMMU group %d is shared with %s; skipped (pciIommuSkipIfShared)",
                                  plan.group, others);
        if (n_others > 0 && !policy->add_all && busy)
                return errmsg_set(ret_error, -EBUSY,
                                  "IOMMU group %d of %s is shared with %s; bind them to vfio-pci or set "
                                  "pciIommuAddAll",
                                  plan.group, addr, busy);

        r = plan_add(root, &plan, addr);
        for (size_t i = 0; r >= 0 && policy->add_all && i < n; i++)
                if (strcmp(members[i], addr) != 0 && !is_bridge(root, members[i]))
                        r = plan_add(root, &plan, members[i]);
        if (r < 0) {
                vfio_plan_clear(&plan);
                return errmsg_set(ret_error, r, "cannot plan binding %s: %s", addr, strerror(-r));
        }
        *ret = plan;
        return 0;
}

static int write_bus_attr(const char *root, const char *rel, const char *value, char *errbuf,
                          size_t errlen) {
        char path[PATH_MAX];
        int r;

        r = path_fmt(path, sizeof(path), root, "/sys/bus/pci/%s", rel);
        if (r >= 0)
                r = write_attr(path, value);
        if (r < 0)
                snprintf(errbuf, errlen, "cannot write %s: %s", path, strerror(-r));
        return r;
}

static int write_dev_attr(const char *root, const char *addr, const char *attr, const char *value,
                          char *errbuf, size_t errlen) {
        char rel[PATH_MAX];

        snprintf(rel, sizeof(rel), "devices/%s/%s", addr, attr);
        return write_bus_attr(root, rel, value, errbuf, errlen);
}

static int unbind_from(const char *root, const char *addr, const char *drv, char *errbuf, size_t errlen) {
        char rel[NAME_MAX_DRIVER + 32];

        snprintf(rel, sizeof(rel), "drivers/%s/unbind", drv);
        return write_bus_attr(root, rel, addr, errbuf, errlen);
}

/* Appends ", text" (or "text" first) to a fixed buffer, truncating. */
static void note_add(char *buf, size_t len, const char *text) {
        size_t used = strlen(buf);

        snprintf(buf + used, len - used, "%s%s", used ? ", " : "", text);
}

/* Clears driver_override, takes the device from vfio-pci and probes it again, so the host driver
 * can have it back. Every step is tried. note says what was done and what failed. Returns the
 * first failure, or 0. */
static int give_back(const char *root, const char *addr, bool probe, char *note, size_t len) {
        char drv[NAME_MAX_DRIVER], msg[PATH_MAX + 128];
        char done[128] = "", failed[2 * (PATH_MAX + 128)] = "";
        int r, ret = 0;

        r = write_dev_attr(root, addr, "driver_override", "", msg, sizeof(msg));
        if (r < 0) {
                ret = r;
                note_add(failed, sizeof(failed), msg);
        } else
                note_add(done, sizeof(done), "driver_override cleared");
        if (current_driver(root, addr, drv, sizeof(drv)) == 0 && strcmp(drv, VFIO_DRIVER) == 0) {
                probe = true;
                r = unbind_from(root, addr, VFIO_DRIVER, msg, sizeof(msg));
                if (r < 0) {
                        ret = ret ? ret : r;
                        note_add(failed, sizeof(failed), msg);
                } else
                        note_add(done, sizeof(done), "unbound from vfio-pci");
        }
        if (probe) {
                r = write_bus_attr(root, "drivers_probe", addr, msg, sizeof(msg));
                if (r < 0) {
                        ret = ret ? ret : r;
                        note_add(failed, sizeof(failed), msg);
                } else
                        note_add(done, sizeof(done), "probed again");
        }
        if (ret == 0)
                snprintf(note, len, "restored: %s", done);
        else
                snprintf(note, len, "restore incomplete (%s): %s", done[0] ? done : "nothing done", failed);
        return ret;
}

/* Waits until vfio-pci holds the device and its group node exists. The node alone is not enough:
 * it exists already when another member of the group is on vfio-pci. On timeout, says in what
 * what was missing. */
static int wait_for_vfio(const char *root, const char *addr, const char *node, int timeout_ms, char *what,
                         size_t len) {
        struct timespec now, end, nap = {0, POLL_NS};
        char drv[NAME_MAX_DRIVER];
        bool bound, node_ok;

        clock_gettime(CLOCK_MONOTONIC, &end);
        end.tv_sec += timeout_ms / 1000;
        end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (end.tv_nsec >= 1000000000L) {
                end.tv_sec++;
                end.tv_nsec -= 1000000000L;
        }
        for (;;) {
                bound = current_driver(root, addr, drv, sizeof(drv)) == 0 && strcmp(drv, VFIO_DRIVER) == 0;
                node_ok = access(node, F_OK) == 0;
                if (bound && node_ok)
                        return 0;
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
                        break;
                nanosleep(&nap, NULL);
        }
        if (!bound)
                snprintf(what, len, "vfio-pci did not take the device within %d ms (driver: %s)", timeout_ms,
                         drv[0] ? drv : "none");
        else
                snprintf(what, len, "%s did not appear within %d ms", node, timeout_ms);
        return -ETIMEDOUT;
}

int vfio_bind(const char *root, const char *pci_addr, int timeout_ms, char **ret_error) {
        char addr[PCI_ADDRESS_LEN], drv[NAME_MAX_DRIVER], path[PATH_MAX];
        char what[PATH_MAX + 128], undo[PATH_MAX + 128];
        bool unbound = false;
        struct stat st;
        int group, r;

        r = pci_address_normalize(pci_addr, addr);
        if (r < 0)
                return errmsg_set(ret_error, r, "invalid PCI address '%.64s'", pci_addr ? pci_addr : "");
        group = group_of(root, addr);
        if (group < 0)
                return group_error(ret_error, group, addr);
        r = current_driver(root, addr, drv, sizeof(drv));
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot read the driver of %s: %s", addr, strerror(-r));
        if (strcmp(drv, VFIO_DRIVER) == 0)
                return 0;

        r = path_fmt(path, sizeof(path), root, "/sys/bus/pci/drivers/" VFIO_DRIVER);
        if (r < 0 || stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return errmsg_set(ret_error, -ENOENT, "%s: the vfio-pci driver is not loaded (%s missing)",
                                  addr, path);

        r = write_dev_attr(root, addr, "driver_override", VFIO_DRIVER, what, sizeof(what));
        if (r < 0)
                /* The kernel takes a sysfs store whole or not at all. */
                return errmsg_set(ret_error, r, "%s: %s; nothing changed", addr, what);
        if (drv[0]) {
                r = unbind_from(root, addr, drv, what, sizeof(what));
                if (r < 0)
                        goto undo;
                unbound = true;
        }
        r = write_bus_attr(root, "drivers_probe", addr, what, sizeof(what));
        if (r < 0)
                goto undo;

        r = path_fmt(path, sizeof(path), root, "/dev/vfio/%d", group);
        if (r < 0)
                snprintf(what, sizeof(what), "/dev/vfio/%d: %s", group, strerror(-r));
        else
                r = wait_for_vfio(root, addr, path, timeout_ms < 0 ? VFIO_DEFAULT_TIMEOUT_MS : timeout_ms,
                                  what, sizeof(what));
        if (r >= 0)
                return 0;
undo:
        give_back(root, addr, unbound, undo, sizeof(undo));
        return errmsg_set(ret_error, r, "%s: %s; %s", addr, what, undo);
}

int vfio_unbind(const char *root, const char *pci_addr, char **ret_error) {
        char addr[PCI_ADDRESS_LEN], drv[NAME_MAX_DRIVER], what[PATH_MAX + 128];
        int r;

        r = pci_address_normalize(pci_addr, addr);
        if (r < 0)
                return errmsg_set(ret_error, r, "invalid PCI address '%.64s'", pci_addr ? pci_addr : "");
        if (!dev_exists(root, addr))
                return errmsg_set(ret_error, -ENODEV, "PCI device %s not found", addr);
        r = current_driver(root, addr, drv, sizeof(drv));
        if (r < 0)
                return errmsg_set(ret_error, r, "cannot read the driver of %s: %s", addr, strerror(-r));
        /* Driverless devices are probed too: an earlier, interrupted bind may have left them so. */
        r = give_back(root, addr, drv[0] == '\0', what, sizeof(what));
        if (r < 0)
                return errmsg_set(ret_error, r, "%s: %s", addr, what);
        return 0;
}

int vfio_apply(const char *root, const struct vfio_plan *plan, int timeout_ms, char **ret_error) {
        _cleanup_free_ bool *bound = NULL;
        _cleanup_free_ char *err = NULL, *rolled = NULL, *unrolled = NULL;
        char drv[NAME_MAX_DRIVER];
        size_t i;
        int r = 0;

        if (!plan || (plan->n > 0 && !plan->members))
                return errmsg_set(ret_error, -EINVAL, "no plan");
        bound = calloc(plan->n ? plan->n : 1, sizeof(bool));
        if (!bound)
                return errmsg_set(ret_error, -ENOMEM, "out of memory");
        for (i = 0; i < plan->n; i++) {
                const char *a = plan->members[i].addr;

                /* Members already on vfio-pci were not ours to bind, so not ours to give back. */
                if (current_driver(root, a, drv, sizeof(drv)) == 0 && strcmp(drv, VFIO_DRIVER) == 0)
                        continue;
                r = vfio_bind(root, a, timeout_ms, &err);
                if (r < 0)
                        break;
                bound[i] = true;
        }
        if (r >= 0)
                return 0;

        for (size_t j = i; j-- > 0;) {
                _cleanup_free_ char *uerr = NULL;

                if (!bound[j])
                        continue;
                if (vfio_unbind(root, plan->members[j].addr, &uerr) < 0) {
                        if (list_append(&unrolled, uerr ? uerr : plan->members[j].addr, NULL) < 0)
                                return errmsg_set(ret_error, r, "out of memory");
                } else if (list_append(&rolled, plan->members[j].addr, NULL) < 0)
                        return errmsg_set(ret_error, r, "out of memory");
        }
        return errmsg_set(ret_error, r, "IOMMU group %d: binding %s failed: %s%s%s%s%s", plan->group,
                          plan->members[i].addr, err ? err : strerror(-r), rolled ? "; given back: " : "",
                          rolled ? rolled : "", unrolled ? "; could not give back: " : "",
                          unrolled ? unrolled : "");
}
