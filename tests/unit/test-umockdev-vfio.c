/* vfio-pci binding against a umockdev testbed of an NVIDIA GPU with its HDMI audio function and
 * the root port above them, all in IOMMU group 13.
 *
 * The testbed's sysfs files are plain files, so a small stand-in for the kernel plays the PCI core:
 * driver_override, drivers/DRIVER/unbind and drivers_probe are FIFOs it reads, logging every value
 * written to each (records joined by '|', so "vfio-pci|" is a set followed by a clear), moving the
 * device's driver link as the kernel would and creating /dev/vfio/13 when vfio-pci takes a device.
 * Tests then check per-file write logs and the final driver of each device.
 *
 * Each case runs twice: through umockdev's /sys redirection (root "") and with the testbed
 * directory as an explicit root prefix. Run under umockdev-wrapper. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include <cmocka.h>
#include <umockdev.h>

#include "cleanup.h"
#include "util.h"
#include "vfio.h"

#define GPU "0000:01:00.0"
#define AUDIO "0000:01:00.1"
#define PORT "0000:00:01.0"
#define OV(a) "sys/bus/pci/devices/" a "/driver_override"
#define UNBIND(d) "sys/bus/pci/drivers/" d "/unbind"
#define PROBE "sys/bus/pci/drivers_probe"
#define NODE "dev/vfio/13"
#define FIXTURE "pci-gpu-nvidia-with-audio.umockdev"

/* snprintf that fails the test instead of truncating. */
#define xsnprintf(buf, len, ...)                                                                            \
        do {                                                                                                \
                int n_ = snprintf(buf, len, __VA_ARGS__);                                                   \
                if (n_ < 0 || (size_t)n_ >= (size_t)(len))                                                  \
                        fail_msg("path too long");                                                          \
        } while (0)

/* ---- a stand-in for the kernel's PCI core ---- */

enum chan_kind { CH_OVERRIDE, CH_UNBIND, CH_PROBE, CH_KINDS };

struct chan {
        enum chan_kind kind;
        char rel[128];   /* path below the testbed root */
        int dev;         /* CH_OVERRIDE: index into devs */
        char driver[32]; /* CH_UNBIND */
        int fd_r, fd_w;  /* fd_w keeps a writer open so reads never see EOF */
        char partial[128];
        char log[1024];
};

struct fake_dev {
        const char *addr, *host_driver;
        char override[64];
};

struct kernel {
        const char *tbroot;
        bool make_node;   /* create /dev/vfio/13 when vfio-pci takes a device */
        bool refuse_vfio; /* vfio-pci's probe fails: the device stays driverless */
        int node_delay_ms;
        struct timespec node_due;
        bool node_pending;
        struct fake_dev devs[3];
        struct chan ch[16];
        size_t n_ch;
        pthread_t thread;
        pthread_mutex_t lock;
        bool stop;
};

static void tb_path(const struct kernel *k, const char *rel, char *buf, size_t len) {
        snprintf(buf, len, "%s/%s", k->tbroot, rel);
}

static struct fake_dev *find_dev(struct kernel *k, const char *addr) {
        for (size_t i = 0; i < ELEMENTSOF(k->devs); i++)
                if (strcmp(k->devs[i].addr, addr) == 0)
                        return &k->devs[i];
        return NULL;
}

/* The device's driver, from its link ("" when none). */
static void driver_of(const char *tbroot, const char *addr, char *buf, size_t len) {
        char path[PATH_MAX], target[PATH_MAX];
        ssize_t n;

        xsnprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s/driver", tbroot, addr);
        n = readlink(path, target, sizeof(target) - 1);
        buf[0] = '\0';
        if (n < 0)
                return;
        target[n] = '\0';
        snprintf(buf, len, "%s", strrchr(target, '/') + 1);
}

static void set_driver(const char *tbroot, const char *addr, const char *driver) {
        char path[PATH_MAX], target[128];

        xsnprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s/driver", tbroot, addr);
        unlink(path);
        if (!driver)
                return;
        xsnprintf(target, sizeof(target), "../../../bus/pci/drivers/%s", driver);
        assert_int_equal(symlink(target, path), 0);
}

static void make_node(struct kernel *k) {
        char path[PATH_MAX];
        FILE *f;

        tb_path(k, NODE, path, sizeof(path));
        f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
}

static void handle(struct kernel *k, struct chan *c, const char *rec) {
        struct fake_dev *d;
        char drv[64], path[PATH_MAX];
        struct stat st;

        snprintf(c->log + strlen(c->log), sizeof(c->log) - strlen(c->log), "%s%s", c->log[0] ? "|" : "",
                 rec);
        switch (c->kind) {
        case CH_OVERRIDE:
                snprintf(k->devs[c->dev].override, sizeof(k->devs[c->dev].override), "%s", rec);
                break;
        case CH_UNBIND:
                driver_of(k->tbroot, rec, drv, sizeof(drv));
                if (strcmp(drv, c->driver) == 0)
                        set_driver(k->tbroot, rec, NULL);
                break;
        case CH_PROBE:
                d = find_dev(k, rec);
                driver_of(k->tbroot, rec, drv, sizeof(drv));
                if (!d || drv[0])
                        break;
                xsnprintf(drv, sizeof(drv), "%s", d->override[0] ? d->override : d->host_driver);
                xsnprintf(path, sizeof(path), "%s/sys/bus/pci/drivers/%s", k->tbroot, drv);
                if (stat(path, &st) < 0 || (k->refuse_vfio && strcmp(drv, "vfio-pci") == 0))
                        break;
                set_driver(k->tbroot, rec, drv);
                if (strcmp(drv, "vfio-pci") == 0 && k->make_node) {
                        clock_gettime(CLOCK_MONOTONIC, &k->node_due);
                        k->node_due.tv_nsec += (long)k->node_delay_ms * 1000000L;
                        k->node_due.tv_sec += k->node_due.tv_nsec / 1000000000L;
                        k->node_due.tv_nsec %= 1000000000L;
                        k->node_pending = true;
                }
                break;
        case CH_KINDS:
                break;
        }
}

/* Handles at most avail bytes of channel c (what was there when the round looked). */
static void drain(struct kernel *k, struct chan *c, int avail) {
        char buf[256], *nl;
        ssize_t n;

        while (avail > 0) {
                n = read(c->fd_r, buf, (size_t)avail < sizeof(buf) - 1 ? (size_t)avail : sizeof(buf) - 1);
                if (n <= 0)
                        return;
                avail -= (int)n;
                buf[n] = '\0';
                if (strlen(c->partial) + (size_t)n >= sizeof(c->partial))
                        n = (ssize_t)(sizeof(c->partial) - strlen(c->partial) - 1);
                memcpy(c->partial + strlen(c->partial), buf, (size_t)n + 1);
                c->partial[sizeof(c->partial) - 1] = '\0';
                while ((nl = strchr(c->partial, '\n'))) {
                        *nl = '\0';
                        handle(k, c, c->partial);
                        memmove(c->partial, nl + 1, strlen(nl + 1) + 1);
                }
        }
}

static void *kernel_run(void *arg) {
        struct kernel *k = arg;
        struct pollfd pfd[16];
        struct timespec now;

        for (;;) {
                for (size_t i = 0; i < k->n_ch; i++)
                        pfd[i] = (struct pollfd){.fd = k->ch[i].fd_r, .events = POLLIN};
                poll(pfd, k->n_ch, 5);
                pthread_mutex_lock(&k->lock);
                if (k->stop) {
                        pthread_mutex_unlock(&k->lock);
                        return NULL;
                }
                /* One device's writes come in this order (override, unbind, probe), but land in
                 * different FIFOs. Look at what is there in the reverse order, then handle it in
                 * write order: a write seen in a later FIFO then always has the writes before it
                 * seen too, however the writer and this thread interleave. */
                int avail[16] = {0};
                for (int kind = CH_KINDS - 1; kind >= 0; kind--)
                        for (size_t i = 0; i < k->n_ch; i++)
                                if ((int)k->ch[i].kind == kind &&
                                    ioctl(k->ch[i].fd_r, FIONREAD, &avail[i]) < 0)
                                        avail[i] = 0;
                for (int kind = 0; kind < CH_KINDS; kind++)
                        for (size_t i = 0; i < k->n_ch; i++)
                                if ((int)k->ch[i].kind == kind)
                                        drain(k, &k->ch[i], avail[i]);
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (k->node_pending &&
                    (now.tv_sec > k->node_due.tv_sec ||
                     (now.tv_sec == k->node_due.tv_sec && now.tv_nsec >= k->node_due.tv_nsec))) {
                        make_node(k);
                        k->node_pending = false;
                }
                pthread_mutex_unlock(&k->lock);
        }
}

/* Waits until the kernel stand-in has handled everything written so far. */
static void kernel_sync(struct kernel *k) {
        for (;;) {
                bool idle = true;

                pthread_mutex_lock(&k->lock);
                for (size_t i = 0; i < k->n_ch; i++) {
                        int avail = 0;

                        ioctl(k->ch[i].fd_r, FIONREAD, &avail);
                        if (avail > 0 || k->ch[i].partial[0])
                                idle = false;
                }
                pthread_mutex_unlock(&k->lock);
                if (idle)
                        return;
                usleep(1000);
        }
}

static const char *kernel_log(struct kernel *k, const char *rel) {
        for (size_t i = 0; i < k->n_ch; i++)
                if (strcmp(k->ch[i].rel, rel) == 0)
                        return k->ch[i].log;
        return NULL;
}

/* ---- testbed ---- */

struct setup {
        bool no_group_dir; /* /sys/kernel/iommu_groups/13 missing */
        bool no_node;      /* vfio-pci binds, but /dev/vfio/13 never appears */
        int node_delay_ms;
        bool no_vfio_driver;     /* vfio-pci module not loaded */
        bool refuse_vfio;        /* vfio-pci's probe fails */
        bool node_exists;        /* /dev/vfio/13 is there from the start (a sibling holds the group) */
        const char *dirs[3];     /* paths made directories: writing them fails with EISDIR */
        const char *unbound[3];  /* devices with no driver */
        const char *on_vfio[3];  /* devices already bound to vfio-pci */
        const char *no_group[3]; /* devices without an iommu_group link */
};

struct env {
        UMockdevTestbed *tb;
        char *tbroot;
        const char *root; /* what the code under test gets: "" or tbroot */
        struct kernel k;
};

static void mkdirs(const char *tbroot, const char *rel) {
        char path[PATH_MAX];

        xsnprintf(path, sizeof(path), "%s/%s", tbroot, rel);
        assert_int_equal(g_mkdir_with_parents(path, 0755), 0);
}

static bool in_list(const char *const *list, size_t n, const char *s) {
        for (size_t i = 0; i < n; i++)
                if (list[i] && strcmp(list[i], s) == 0)
                        return true;
        return false;
}

static void add_chan(struct env *e, enum chan_kind kind, const char *rel, int dev, const char *driver,
                     const struct setup *s) {
        struct chan *c = &e->k.ch[e->k.n_ch];
        char path[PATH_MAX];

        tb_path(&e->k, rel, path, sizeof(path));
        unlink(path);
        if (in_list(s->dirs, ELEMENTSOF(s->dirs), rel)) {
                assert_int_equal(mkdir(path, 0755), 0);
                return;
        }
        *c = (struct chan){.kind = kind, .dev = dev};
        snprintf(c->rel, sizeof(c->rel), "%s", rel);
        snprintf(c->driver, sizeof(c->driver), "%s", driver ? driver : "");
        assert_int_equal(mkfifo(path, 0644), 0);
        c->fd_r = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        assert_true(c->fd_r >= 0);
        c->fd_w = open(path, O_WRONLY | O_CLOEXEC);
        assert_true(c->fd_w >= 0);
        e->k.n_ch++;
}

static const char *fixture_dir(void) {
        static char dir[PATH_MAX];
        const char *top = getenv("VHP_TOP");

        xsnprintf(dir, sizeof(dir), "%s/tests/data/umockdev", top && *top ? top : ".");
        return dir;
}

static void env_start(struct env *e, const struct setup *s, bool explicit_root) {
        static const char *const drivers[] = {"nvidia", "snd_hda_intel", "pcieport", "vfio-pci"};
        static const char *const devs[][3] = {
                {PORT, "pcieport", "../../../../devices/pci0000:00/0000:00:01.0"},
                {GPU, "nvidia", "../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0"},
                {AUDIO, "snd_hda_intel", "../../../../devices/pci0000:00/0000:00:01.0/0000:01:00.1"},
        };
        g_autoptr(GError) err = NULL;
        char path[PATH_MAX];

        memset(e, 0, sizeof(*e));
        e->tb = umockdev_testbed_new();
        xsnprintf(path, sizeof(path), "%s/%s", fixture_dir(), FIXTURE);
        if (!umockdev_testbed_add_from_file(e->tb, path, &err))
                fail_msg("cannot load %s: %s", path, err ? err->message : "?");
        e->tbroot = umockdev_testbed_get_root_dir(e->tb);
        e->root = explicit_root ? e->tbroot : "";
        e->k.tbroot = e->tbroot;
        e->k.make_node = !s->no_node;
        e->k.node_delay_ms = s->node_delay_ms;
        e->k.refuse_vfio = s->refuse_vfio;
        pthread_mutex_init(&e->k.lock, NULL);

        mkdirs(e->tbroot, "dev/vfio");
        if (s->node_exists)
                make_node(&e->k);
        for (size_t i = 0; i < ELEMENTSOF(drivers); i++) {
                xsnprintf(path, sizeof(path), "sys/bus/pci/drivers/%s", drivers[i]);
                if (strcmp(drivers[i], "vfio-pci") == 0 && s->no_vfio_driver)
                        continue;
                mkdirs(e->tbroot, path);
                xsnprintf(path, sizeof(path), "sys/bus/pci/drivers/%s/unbind", drivers[i]);
                add_chan(e, CH_UNBIND, path, -1, drivers[i], s);
        }
        if (!s->no_group_dir)
                mkdirs(e->tbroot, "sys/kernel/iommu_groups/13/devices");
        for (size_t i = 0; i < ELEMENTSOF(devs); i++) {
                e->k.devs[i] = (struct fake_dev){.addr = devs[i][0], .host_driver = devs[i][1]};
                xsnprintf(path, sizeof(path), "sys/bus/pci/devices/%s/driver_override", devs[i][0]);
                add_chan(e, CH_OVERRIDE, path, (int)i, NULL, s);
                if (in_list(s->unbound, ELEMENTSOF(s->unbound), devs[i][0]))
                        set_driver(e->tbroot, devs[i][0], NULL);
                if (in_list(s->on_vfio, ELEMENTSOF(s->on_vfio), devs[i][0]))
                        set_driver(e->tbroot, devs[i][0], "vfio-pci");
                if (in_list(s->no_group, ELEMENTSOF(s->no_group), devs[i][0])) {
                        xsnprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s/iommu_group", e->tbroot,
                                  devs[i][0]);
                        assert_int_equal(unlink(path), 0);
                        continue;
                }
                if (s->no_group_dir)
                        continue;
                xsnprintf(path, sizeof(path), "%s/sys/kernel/iommu_groups/13/devices/%s", e->tbroot,
                          devs[i][0]);
                assert_int_equal(symlink(devs[i][2], path), 0);
        }
        add_chan(e, CH_PROBE, PROBE, -1, NULL, s);
        assert_int_equal(pthread_create(&e->k.thread, NULL, kernel_run, &e->k), 0);
}

static void env_stop(struct env *e) {
        char *dir = g_strdup(e->tbroot);

        pthread_mutex_lock(&e->k.lock);
        e->k.stop = true;
        pthread_mutex_unlock(&e->k.lock);
        pthread_join(e->k.thread, NULL);
        pthread_mutex_destroy(&e->k.lock);
        for (size_t i = 0; i < e->k.n_ch; i++) {
                close(e->k.ch[i].fd_r);
                close(e->k.ch[i].fd_w);
        }
        g_free(e->tbroot);
        g_object_unref(e->tb);
        /* The testbed removes its whole tree, our FIFOs and directories included. */
        assert_int_equal(access(dir, F_OK), -1);
        g_free(dir);
}

static bool exists(const struct env *e, const char *rel) {
        char path[PATH_MAX];

        xsnprintf(path, sizeof(path), "%s/%s", e->tbroot, rel);
        return access(path, F_OK) == 0;
}

struct log_expect {
        const char *rel, *log;
};

/* Every write channel holds exactly the expected log; those not listed saw no write at all. */
static void check_logs(struct env *e, const struct log_expect *exp, size_t n_exp, const char *name) {
        kernel_sync(&e->k);
        for (size_t i = 0; i < e->k.n_ch; i++) {
                const char *want = "";

                for (size_t j = 0; j < n_exp; j++)
                        if (exp[j].rel && strcmp(exp[j].rel, e->k.ch[i].rel) == 0)
                                want = exp[j].log;
                if (strcmp(e->k.ch[i].log, want) != 0)
                        fail_msg("%s: %s got \"%s\", expected \"%s\"", name, e->k.ch[i].rel, e->k.ch[i].log,
                                 want);
        }
        for (size_t j = 0; j < n_exp; j++)
                if (exp[j].rel && !kernel_log(&e->k, exp[j].rel))
                        fail_msg("%s: no channel %s", name, exp[j].rel);
}

static void check_driver(struct env *e, const char *addr, const char *want, const char *name) {
        char drv[32];

        driver_of(e->tbroot, addr, drv, sizeof(drv));
        if (strcmp(drv, want) != 0)
                fail_msg("%s: %s is bound to \"%s\", expected \"%s\"", name, addr, drv, want);
}

static void check_msg(const char *msg, const char *const *subs, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++) {
                if (!subs[i])
                        continue;
                if (!msg || !strstr(msg, subs[i]))
                        fail_msg("%s: message \"%s\" lacks \"%s\"", name, msg ? msg : "(null)", subs[i]);
        }
}

/* ---- vfio_bind / vfio_unbind ---- */

enum op { OP_BIND, OP_UNBIND, OP_BIND_UNBIND };

struct bind_case {
        const char *name;
        struct setup s;
        enum op op;
        const char *addr;
        int timeout_ms;
        int ret;
        const char *msg[3];
        const char *driver; /* final driver of addr */
        bool node;          /* /dev/vfio/13 exists afterwards */
        struct log_expect logs[6];
};

static const struct bind_case bind_cases[] = {
        {"bind gpu",
         {},
         OP_BIND,
         GPU,
         10000,
         0,
         {},
         "vfio-pci",
         true,
         {{OV(GPU), "vfio-pci"}, {UNBIND("nvidia"), GPU}, {PROBE, GPU}}},
        {"bind short address",
         {},
         OP_BIND,
         "01:00.0",
         10000,
         0,
         {},
         "vfio-pci",
         true,
         {{OV(GPU), "vfio-pci"}, {UNBIND("nvidia"), GPU}, {PROBE, GPU}}},
        {"bind waits for a late group node",
         {.node_delay_ms = 300},
         OP_BIND,
         GPU,
         20000,
         0,
         {},
         "vfio-pci",
         true,
         {{OV(GPU), "vfio-pci"}, {UNBIND("nvidia"), GPU}, {PROBE, GPU}}},
        {"bind driverless device",
         {.unbound = {GPU}},
         OP_BIND,
         GPU,
         10000,
         0,
         {},
         "vfio-pci",
         true,
         {{OV(GPU), "vfio-pci"}, {PROBE, GPU}}},
        {"bind already on vfio-pci is a no-op",
         {.on_vfio = {GPU}},
         OP_BIND,
         GPU,
         10000,
         0,
         {},
         "vfio-pci",
         false,
         {}},
        {"group node never appears",
         {.no_node = true},
         OP_BIND,
         GPU,
         1000,
         -ETIMEDOUT,
         {"/dev/vfio/13", "restored: driver_override cleared, unbound from vfio-pci, probed again"},
         "nvidia",
         false,
         {{OV(GPU), "vfio-pci|"}, {UNBIND("nvidia"), GPU}, {UNBIND("vfio-pci"), GPU}, {PROBE, GPU "|" GPU}}},
        {"vfio-pci refuses the device while the group node exists",
         {.refuse_vfio = true, .node_exists = true},
         OP_BIND,
         GPU,
         1000,
         -ETIMEDOUT,
         {"vfio-pci did not take the device", "(driver: none)",
          "restored: driver_override cleared, probed again"},
         "nvidia",
         true,
         {{OV(GPU), "vfio-pci|"}, {UNBIND("nvidia"), GPU}, {PROBE, GPU "|" GPU}}},
        {"unbind file not writable",
         {.dirs = {UNBIND("nvidia")}},
         OP_BIND,
         GPU,
         10000,
         -EISDIR,
         {"sys/bus/pci/drivers/nvidia/unbind: Is a directory; restored: driver_override cleared"},
         "nvidia",
         false,
         {{OV(GPU), "vfio-pci|"}}},
        {"driver_override not writable",
         {.dirs = {OV(GPU)}},
         OP_BIND,
         GPU,
         10000,
         -EISDIR,
         {"/driver_override: Is a directory; nothing changed"},
         "nvidia",
         false,
         {}},
        {"drivers_probe not writable",
         {.dirs = {PROBE}},
         OP_BIND,
         GPU,
         10000,
         -EISDIR,
         {"drivers_probe: Is a directory; restore incomplete (driver_override cleared): cannot write"},
         "",
         false,
         {{OV(GPU), "vfio-pci|"}, {UNBIND("nvidia"), GPU}}},
        {"vfio-pci not loaded",
         {.no_vfio_driver = true},
         OP_BIND,
         GPU,
         10000,
         -ENOENT,
         {"vfio-pci driver is not loaded"},
         "nvidia",
         false,
         {}},
        {"no such device", {}, OP_BIND, "0000:02:00.0", 10000, -ENODEV, {"not found"}, NULL, false, {}},
        {"malformed address",
         {},
         OP_BIND,
         "0000:01:00.0/../x",
         10000,
         -EINVAL,
         {"invalid PCI address"},
         NULL,
         false,
         {}},
        {"no IOMMU group",
         {.no_group = {GPU}},
         OP_BIND,
         GPU,
         10000,
         -EOPNOTSUPP,
         {"no IOMMU group"},
         "nvidia",
         false,
         {}},
        {"bind then unbind",
         {},
         OP_BIND_UNBIND,
         GPU,
         10000,
         0,
         {},
         "nvidia",
         true,
         {{OV(GPU), "vfio-pci|"}, {UNBIND("nvidia"), GPU}, {UNBIND("vfio-pci"), GPU}, {PROBE, GPU "|" GPU}}},
        {"unbind leaves another driver alone",
         {},
         OP_UNBIND,
         AUDIO,
         0,
         0,
         {},
         "snd_hda_intel",
         false,
         {{OV(AUDIO), ""}}},
        {"unbind probes a driverless device",
         {.unbound = {AUDIO}},
         OP_UNBIND,
         AUDIO,
         0,
         0,
         {},
         "snd_hda_intel",
         false,
         {{OV(AUDIO), ""}, {PROBE, AUDIO}}},
        {"unbind with vfio-pci unbind not writable",
         {.on_vfio = {GPU}, .dirs = {UNBIND("vfio-pci")}},
         OP_UNBIND,
         GPU,
         0,
         -EISDIR,
         {"drivers/vfio-pci/unbind"},
         "vfio-pci",
         false,
         {{OV(GPU), ""}, {PROBE, GPU}}},
};

struct run {
        const void *c;
        bool explicit_root;
};

static void test_bind(void **state) {
        const struct run *run = *state;
        const struct bind_case *c = run->c;
        _cleanup_free_ char *msg = NULL;
        struct env e;
        int r;

        env_start(&e, &c->s, run->explicit_root);
        if (c->op == OP_UNBIND) {
                r = vfio_unbind(e.root, c->addr, &msg);
        } else {
                r = vfio_bind(e.root, c->addr, c->timeout_ms, &msg);
                if (r == 0 && c->op == OP_BIND_UNBIND) {
                        assert_true(exists(&e, NODE));
                        check_driver(&e, c->addr, "vfio-pci", c->name);
                        r = vfio_unbind(e.root, c->addr, &msg);
                }
        }
        if (r != c->ret)
                fail_msg("%s: returned %d (%s), expected %d; message: %s", c->name, r, strerror(-r), c->ret,
                         msg ? msg : "(none)");
        if (r == 0)
                assert_null(msg);
        else
                print_message("%s: %s\n", c->name, msg);
        check_msg(msg, c->msg, ELEMENTSOF(c->msg), c->name);
        check_logs(&e, c->logs, ELEMENTSOF(c->logs), c->name);
        if (c->driver)
                check_driver(&e, strcmp(c->addr, "01:00.0") == 0 ? GPU : c->addr, c->driver, c->name);
        assert_int_equal(exists(&e, NODE), c->node);
        env_stop(&e);
}

/* ---- vfio_group_members ---- */

static void test_group_members(void **state) {
        static const struct {
                struct setup s;
                const char *addr;
                int ret;
                const char *members[4];
        } cases[] = {
                {{}, GPU, 0, {PORT, GPU, AUDIO}},
                {{}, "0000:00:01.0", 0, {PORT, GPU, AUDIO}},
                /* Without /sys/kernel/iommu_groups/13 the iommu_group links still tell. */
                {{.no_group_dir = true}, AUDIO, 0, {PORT, GPU, AUDIO}},
                {{.no_group_dir = true, .no_group = {PORT}}, AUDIO, 0, {GPU, AUDIO}},
                {{}, "0000:09:00.0", -ENODEV, {}},
                {{.no_group = {GPU}}, GPU, -EOPNOTSUPP, {}},
                {{}, "zz:00.0", -EINVAL, {}},
        };
        const struct run *run = *state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char **m = NULL;
                size_t n = 99, want = 0;
                struct env e;
                int r;

                env_start(&e, &cases[i].s, run->explicit_root);
                r = vfio_group_members(e.root, cases[i].addr, &m, &n);
                if (r != cases[i].ret)
                        fail_msg("case %zu: %d, expected %d", i, r, cases[i].ret);
                while (want < ELEMENTSOF(cases[i].members) && cases[i].members[want])
                        want++;
                if (r == 0) {
                        assert_int_equal(n, want);
                        for (size_t j = 0; j < want; j++)
                                assert_string_equal(m[j], cases[i].members[j]);
                        assert_null(m[n]);
                        assert_int_equal(vfio_iommu_group(e.root, cases[i].addr), 13);
                } else {
                        assert_null(m);
                        assert_int_equal(n, 99);
                }
                strv_free(m);
                env_stop(&e);
        }
}

/* ---- vfio_prepare ---- */

struct prepare_case {
        const char *name;
        struct setup s;
        const char *addr;
        struct vfio_policy policy;
        int ret;
        const char *msg[3];
        const char *members[3]; /* plan, in order */
        const char *drivers[3];
};

static const struct prepare_case prepare_cases[] = {
        {"audio on its host driver",
         {},
         GPU,
         {},
         -EBUSY,
         {"IOMMU group 13", AUDIO " (bound to snd_hda_intel)", "pciIommuAddAll"},
         {},
         {}},
        {"audio on its host driver, add all",
         {},
         GPU,
         {.add_all = true},
         0,
         {},
         {GPU, AUDIO},
         {"nvidia", "snd_hda_intel"}},
        {"audio asked for, gpu follows",
         {},
         AUDIO,
         {.add_all = true},
         0,
         {},
         {AUDIO, GPU},
         {"snd_hda_intel", "nvidia"}},
        {"audio driverless", {.unbound = {AUDIO}}, GPU, {}, 0, {}, {GPU}, {"nvidia"}},
        {"audio on vfio-pci", {.on_vfio = {AUDIO}}, GPU, {}, 0, {}, {GPU}, {"nvidia"}},
        {"skip if shared",
         {},
         GPU,
         {.skip_if_shared = true},
         -EXDEV,
         {"IOMMU group 13 is shared with " AUDIO},
         {},
         {}},
        {"skip if shared wins over add all",
         {},
         GPU,
         {.add_all = true, .skip_if_shared = true},
         -EXDEV,
         {"shared with " AUDIO},
         {},
         {}},
        /* The root port shares the group, but bridges stay with the host. */
        {"only a bridge besides",
         {.no_group = {AUDIO}},
         GPU,
         {.skip_if_shared = true},
         0,
         {},
         {GPU},
         {"nvidia"}},
        {"no group directory",
         {.no_group_dir = true},
         GPU,
         {.add_all = true},
         0,
         {},
         {GPU, AUDIO},
         {"nvidia", "snd_hda_intel"}},
        {"a bridge itself", {}, PORT, {.add_all = true}, -EINVAL, {"bridge"}, {}, {}},
        {"missing device", {}, "0000:05:00.0", {}, -ENODEV, {"0000:05:00.0 not found"}, {}, {}},
        {"no IOMMU", {.no_group = {GPU}}, GPU, {}, -EOPNOTSUPP, {"no IOMMU group"}, {}, {}},
};

static void test_prepare(void **state) {
        const struct run *run = *state;
        const struct prepare_case *c = run->c;
        _cleanup_free_ char *msg = NULL;
        struct vfio_plan plan = {.group = -7};
        size_t want = 0;
        struct env e;
        int r;

        env_start(&e, &c->s, run->explicit_root);
        r = vfio_prepare(e.root, c->addr, &c->policy, &plan, &msg);
        if (r != c->ret)
                fail_msg("%s: returned %d, expected %d; message: %s", c->name, r, c->ret,
                         msg ? msg : "(none)");
        check_msg(msg, c->msg, ELEMENTSOF(c->msg), c->name);
        while (want < ELEMENTSOF(c->members) && c->members[want])
                want++;
        if (r < 0) {
                assert_int_equal(plan.group, -7);
                assert_null(plan.members);
        } else {
                assert_null(msg);
                assert_int_equal(plan.group, 13);
                assert_int_equal(plan.n, want);
                for (size_t i = 0; i < want; i++) {
                        assert_string_equal(plan.members[i].addr, c->members[i]);
                        assert_string_equal(plan.members[i].driver, c->drivers[i]);
                }
        }
        /* Deciding writes nothing. */
        check_logs(&e, NULL, 0, c->name);
        vfio_plan_clear(&plan);
        vfio_plan_clear(&plan);
        assert_int_equal(plan.n, 0);
        env_stop(&e);
}

/* ---- vfio_apply ---- */

struct apply_case {
        const char *name;
        struct setup s;
        int ret;
        const char *msg[3];
        const char *gpu_driver, *audio_driver;
        struct log_expect logs[8];
};

static const struct apply_case apply_cases[] = {
        {"whole group",
         {},
         0,
         {},
         "vfio-pci",
         "vfio-pci",
         {{OV(GPU), "vfio-pci"},
          {OV(AUDIO), "vfio-pci"},
          {UNBIND("nvidia"), GPU},
          {UNBIND("snd_hda_intel"), AUDIO},
          {PROBE, GPU "|" AUDIO}}},
        {"second member fails, first is given back",
         {.dirs = {UNBIND("snd_hda_intel")}},
         -EISDIR,
         {"binding " AUDIO " failed", "drivers/snd_hda_intel/unbind", "given back: " GPU},
         "nvidia",
         "snd_hda_intel",
         {{OV(GPU), "vfio-pci|"},
          {OV(AUDIO), "vfio-pci|"},
          {UNBIND("nvidia"), GPU},
          {UNBIND("vfio-pci"), GPU},
          {PROBE, GPU "|" GPU}}},
        /* Audio was on vfio-pci before: not ours, so neither bound nor given back. */
        {"member already on vfio-pci is left alone",
         {.on_vfio = {AUDIO}, .dirs = {UNBIND("nvidia")}},
         -EISDIR,
         {"binding " GPU " failed"},
         "nvidia",
         "vfio-pci",
         {{OV(GPU), "vfio-pci|"}}},
        {"member already on vfio-pci stays there on rollback",
         {.on_vfio = {GPU}, .dirs = {UNBIND("snd_hda_intel")}},
         -EISDIR,
         {"binding " AUDIO " failed"},
         "vfio-pci",
         "snd_hda_intel",
         {{OV(AUDIO), "vfio-pci|"}}},
};

static void test_apply(void **state) {
        const struct run *run = *state;
        const struct apply_case *c = run->c;
        _cleanup_free_ char *msg = NULL;
        struct vfio_plan plan = {0};
        struct env e;
        int r;

        env_start(&e, &c->s, run->explicit_root);
        assert_int_equal(vfio_prepare(e.root, GPU, &(struct vfio_policy){.add_all = true}, &plan, &msg), 0);
        assert_int_equal(plan.n, 2);
        r = vfio_apply(e.root, &plan, 10000, &msg);
        if (r != c->ret)
                fail_msg("%s: returned %d, expected %d; message: %s", c->name, r, c->ret,
                         msg ? msg : "(none)");
        if (msg)
                print_message("%s: %s\n", c->name, msg);
        check_msg(msg, c->msg, ELEMENTSOF(c->msg), c->name);
        check_logs(&e, c->logs, ELEMENTSOF(c->logs), c->name);
        check_driver(&e, GPU, c->gpu_driver, c->name);
        check_driver(&e, AUDIO, c->audio_driver, c->name);
        check_driver(&e, PORT, "pcieport", c->name);
        vfio_plan_clear(&plan);
        env_stop(&e);
}

/* ---- registration: every case, through /sys redirection and with an explicit root ---- */

#define MAX_TESTS 128

static struct CMUnitTest tests[MAX_TESTS];
static struct run runs[MAX_TESTS];
static char names[MAX_TESTS][128];
static size_t n_tests;

static void add(const char *what, const char *name, CMUnitTestFunction fn, const void *c,
                bool explicit_root) {
        if (n_tests >= MAX_TESTS)
                abort();
        snprintf(names[n_tests], sizeof(names[0]), "%s: %s (%s)", what, name,
                 explicit_root ? "root prefix" : "/sys");
        runs[n_tests] = (struct run){.c = c, .explicit_root = explicit_root};
        tests[n_tests] = (struct CMUnitTest){
                .name = names[n_tests], .test_func = fn, .initial_state = &runs[n_tests]};
        n_tests++;
}

int main(void) {
        const char *preload = getenv("LD_PRELOAD");

        if (!preload || !strstr(preload, "libumockdev-preload")) {
                fprintf(stderr, "run this under umockdev-wrapper\n");
                return 1;
        }
        for (int root = 0; root < 2; root++) {
                add("group members", "table", test_group_members, NULL, root);
                for (size_t i = 0; i < ELEMENTSOF(bind_cases); i++)
                        add("bind", bind_cases[i].name, test_bind, &bind_cases[i], root);
                for (size_t i = 0; i < ELEMENTSOF(prepare_cases); i++)
                        add("prepare", prepare_cases[i].name, test_prepare, &prepare_cases[i], root);
                for (size_t i = 0; i < ELEMENTSOF(apply_cases); i++)
                        add("apply", apply_cases[i].name, test_apply, &apply_cases[i], root);
        }
        return _cmocka_run_group_tests("vfio", tests, n_tests, NULL, NULL);
}
