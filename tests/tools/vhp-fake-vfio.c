/* vhp-fake-vfio TESTBED LOG: a stand-in for the kernel's PCI core in a umockdev testbed, so that
 * binding devices to vfio-pci can be tested end to end (the logic of tests/unit/test-umockdev-vfio.c
 * as a program).
 *
 * Setup, for every PCI device in TESTBED/sys/bus/pci/devices: its driver and iommu_group links are
 * rewritten to resolve inside the testbed (recorded fixtures may have them a level short), it is
 * linked into sys/kernel/iommu_groups/N/devices, and its driver_override becomes a FIFO; every driver
 * seen, and vfio-pci, gets sys/bus/pci/drivers/D/unbind as a FIFO; sys/bus/pci/drivers_probe is a
 * FIFO; dev/vfio exists. Then it prints "ready" on stdout and serves the FIFOs as the kernel would:
 * driver_override remembers the value, unbind removes the driver link, drivers_probe binds a
 * driverless device to its override (else its original driver) and creates dev/vfio/N when vfio-pci
 * takes it. Every write is appended to LOG as "PATH=VALUE" (PATH relative to TESTBED).
 * Sync: a line written to the FIFO LOG.sync is answered, once everything written to the other FIFOs
 * before it has been handled, by replacing the file LOG.ack with that line. Runs until
 * SIGTERM/SIGINT. Run it without the umockdev preload: it works on the testbed's real paths. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEVS 32
#define MAX_CHANS 64

enum kind { CH_OVERRIDE, CH_UNBIND, CH_PROBE, CH_SYNC, CH_KINDS };

struct dev {
        char addr[32], host_driver[64], override[256], dir[1024];
        int group;
};

struct chan {
        enum kind kind;
        char rel[256], driver[64];
        int dev, fd_r, fd_w;
        char partial[4096];
};

static const char *tb, *log_path;
static FILE *logfile;
static struct dev devs[MAX_DEVS];
static size_t n_devs;
static struct chan chans[MAX_CHANS];
static size_t n_chans;
static volatile sig_atomic_t stop;

static void die(const char *what) {
        fprintf(stderr, "vhp-fake-vfio: %s: %s\n", what, strerror(errno));
        exit(1);
}

/* snprintf that stops the program instead of truncating. */
#define xsnprintf(buf, len, ...)                                                                            \
        do {                                                                                                \
                int n_ = snprintf(buf, len, __VA_ARGS__);                                                   \
                if (n_ < 0 || (size_t)n_ >= (size_t)(len)) {                                                \
                        errno = ENAMETOOLONG;                                                               \
                        die("string too long");                                                             \
                }                                                                                           \
        } while (0)

static void tbpath(char *buf, const char *rel) {
        if (snprintf(buf, PATH_MAX, "%s/%s", tb, rel) >= PATH_MAX) {
                errno = ENAMETOOLONG;
                die(rel);
        }
}

static void mkdirs(const char *rel) {
        char path[PATH_MAX];
        tbpath(path, rel);
        for (char *p = path + strlen(tb) + 1; (p = strchr(p, '/')); p++) {
                *p = '\0';
                if (mkdir(path, 0755) < 0 && errno != EEXIST)
                        die(path);
                *p = '/';
        }
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
                die(path);
}

/* "../" repeated for each component of dir below TESTBED/sys, so a link in dir reaches sys/. */
static void up_to_sys(const char *dir, char *buf, size_t len) {
        const char *p = dir + strlen(tb) + strlen("/sys");
        buf[0] = '\0';
        for (; *p; p++)
                if (*p == '/')
                        strncat(buf, "../", len - strlen(buf) - 1);
}

static void link_basename(const char *path, char *buf, size_t len) {
        char target[PATH_MAX];
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        buf[0] = '\0';
        if (n < 0)
                return;
        target[n] = '\0';
        xsnprintf(buf, len, "%s", strrchr(target, '/') ? strrchr(target, '/') + 1 : target);
}

static void set_driver(struct dev *d, const char *driver) {
        char path[2048], target[PATH_MAX], up[256];
        xsnprintf(path, sizeof(path), "%s/driver", d->dir);
        unlink(path);
        if (!driver)
                return;
        up_to_sys(d->dir, up, sizeof(up));
        xsnprintf(target, sizeof(target), "%sbus/pci/drivers/%s", up, driver);
        if (symlink(target, path) < 0)
                die(path);
}

static void add_chan(enum kind kind, const char *rel, int dev, const char *driver) {
        char path[PATH_MAX];
        struct chan *c;

        for (size_t i = 0; i < n_chans; i++)
                if (strcmp(chans[i].rel, rel) == 0)
                        return;
        if (n_chans == MAX_CHANS) {
                errno = ENOSPC;
                die("too many FIFOs");
        }
        c = &chans[n_chans++];
        *c = (struct chan){.kind = kind, .dev = dev};
        xsnprintf(c->rel, sizeof(c->rel), "%s", rel);
        xsnprintf(c->driver, sizeof(c->driver), "%s", driver ? driver : "");
        tbpath(path, rel);
        unlink(path);
        if (mkfifo(path, 0644) < 0)
                die(path);
        /* Our own writer keeps reads from ever seeing EOF. */
        if ((c->fd_r = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0 ||
            (c->fd_w = open(path, O_WRONLY | O_CLOEXEC)) < 0)
                die(path);
}

static void add_driver(const char *driver) {
        char rel[256];
        xsnprintf(rel, sizeof(rel), "sys/bus/pci/drivers/%s", driver);
        mkdirs(rel);
        xsnprintf(rel, sizeof(rel), "sys/bus/pci/drivers/%s/unbind", driver);
        add_chan(CH_UNBIND, rel, -1, driver);
}

static void setup(void) {
        char path[PATH_MAX], rel[512], up[256], target[PATH_MAX], group[32];
        struct dirent *de;
        DIR *dir;

        mkdirs("dev/vfio");
        add_driver("vfio-pci");
        tbpath(path, "sys/bus/pci/devices");
        if (!(dir = opendir(path)))
                die(path);
        while ((de = readdir(dir)) && n_devs < MAX_DEVS) {
                struct dev *d = &devs[n_devs];
                char lpath[PATH_MAX * 2];
                if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(d->addr))
                        continue;
                xsnprintf(lpath, sizeof(lpath), "%s/%s", path, de->d_name);
                char real[PATH_MAX];
                if (!realpath(lpath, real))
                        die(lpath);
                if (strlen(real) >= sizeof(d->dir)) {
                        errno = ENAMETOOLONG;
                        die(real);
                }
                memcpy(d->dir, real, strlen(real) + 1);
                xsnprintf(d->addr, sizeof(d->addr), "%s", de->d_name);
                xsnprintf(lpath, sizeof(lpath), "%s/driver", d->dir);
                link_basename(lpath, d->host_driver, sizeof(d->host_driver));
                xsnprintf(lpath, sizeof(lpath), "%s/iommu_group", d->dir);
                link_basename(lpath, group, sizeof(group));
                d->group = group[0] ? atoi(group) : -1;
                up_to_sys(d->dir, up, sizeof(up));
                if (d->host_driver[0]) {
                        add_driver(d->host_driver);
                        set_driver(d, d->host_driver);
                }
                if (d->group >= 0) {
                        unlink(lpath);
                        xsnprintf(target, sizeof(target), "%skernel/iommu_groups/%d", up, d->group);
                        if (symlink(target, lpath) < 0)
                                die(lpath);
                        xsnprintf(rel, sizeof(rel), "sys/kernel/iommu_groups/%d/devices", d->group);
                        mkdirs(rel);
                        xsnprintf(rel, sizeof(rel), "sys/kernel/iommu_groups/%d/devices/%s", d->group,
                                  d->addr);
                        tbpath(lpath, rel);
                        /* from sys/kernel/iommu_groups/N/devices up to sys/ */
                        xsnprintf(target, sizeof(target), "../../../..%s",
                                  d->dir + strlen(tb) + strlen("/sys"));
                        unlink(lpath);
                        if (symlink(target, lpath) < 0)
                                die(lpath);
                }
                xsnprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/driver_override", d->addr);
                add_chan(CH_OVERRIDE, rel, (int)n_devs, NULL);
                n_devs++;
        }
        closedir(dir);
        add_chan(CH_PROBE, "sys/bus/pci/drivers_probe", -1, NULL);
}

/* The sync FIFO lives beside the log, outside the testbed. */
static void add_sync(void) {
        char path[PATH_MAX];
        struct chan *c = &chans[n_chans++];
        xsnprintf(path, sizeof(path), "%s.sync", log_path);
        *c = (struct chan){.kind = CH_SYNC, .dev = -1};
        xsnprintf(c->rel, sizeof(c->rel), "(sync)");
        unlink(path);
        if (mkfifo(path, 0644) < 0 || (c->fd_r = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) < 0 ||
            (c->fd_w = open(path, O_WRONLY | O_CLOEXEC)) < 0)
                die(path);
}

static struct dev *find_dev(const char *addr) {
        for (size_t i = 0; i < n_devs; i++)
                if (strcmp(devs[i].addr, addr) == 0)
                        return &devs[i];
        return NULL;
}

static void make_node(int group) {
        char rel[64], path[PATH_MAX];
        int fd;
        xsnprintf(rel, sizeof(rel), "dev/vfio/%d", group);
        tbpath(path, rel);
        if ((fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) >= 0)
                close(fd);
}

static void handle(struct chan *c, const char *rec) {
        char drv[64], path[PATH_MAX * 2], rel[128];
        struct dev *d;
        struct stat st;

        if (c->kind == CH_SYNC) {
                char tmp[PATH_MAX], ack[PATH_MAX];
                FILE *f;
                xsnprintf(tmp, sizeof(tmp), "%s.ack.tmp", log_path);
                xsnprintf(ack, sizeof(ack), "%s.ack", log_path);
                if (!(f = fopen(tmp, "we")))
                        die(tmp);
                fprintf(f, "%s\n", rec);
                if (fclose(f) != 0 || rename(tmp, ack) < 0)
                        die(ack);
                return;
        }
        fprintf(logfile, "%s=%s\n", c->rel, rec);
        fflush(logfile);
        switch (c->kind) {
        case CH_OVERRIDE:
                xsnprintf(devs[c->dev].override, sizeof(devs[c->dev].override), "%s", rec);
                break;
        case CH_UNBIND:
                if (!(d = find_dev(rec)))
                        break;
                xsnprintf(path, sizeof(path), "%s/driver", d->dir);
                link_basename(path, drv, sizeof(drv));
                if (strcmp(drv, c->driver) == 0)
                        set_driver(d, NULL);
                break;
        case CH_PROBE:
                if (!(d = find_dev(rec)))
                        break;
                xsnprintf(path, sizeof(path), "%s/driver", d->dir);
                link_basename(path, drv, sizeof(drv));
                if (drv[0])
                        break;
                xsnprintf(drv, sizeof(drv), "%s", d->override[0] ? d->override : d->host_driver);
                xsnprintf(rel, sizeof(rel), "sys/bus/pci/drivers/%s", drv);
                tbpath(path, rel);
                if (!drv[0] || stat(path, &st) < 0)
                        break;
                set_driver(d, drv);
                if (strcmp(drv, "vfio-pci") == 0 && d->group >= 0)
                        make_node(d->group);
                break;
        case CH_SYNC:
        case CH_KINDS:
                break;
        }
}

/* Appends what the FIFO holds now to c->partial. */
static void fill(struct chan *c) {
        int avail = 0;
        ssize_t n;
        size_t have;

        while (ioctl(c->fd_r, FIONREAD, &avail) == 0 && avail > 0) {
                have = strlen(c->partial);
                if (have + 1 >= sizeof(c->partial))
                        return;
                n = read(c->fd_r, c->partial + have, sizeof(c->partial) - have - 1);
                if (n <= 0)
                        return;
                c->partial[have + (size_t)n] = '\0';
        }
}

/* Handles the complete records in c->partial. */
static void drain(struct chan *c) {
        char *nl;
        while ((nl = strchr(c->partial, '\n'))) {
                *nl = '\0';
                handle(c, c->partial);
                memmove(c->partial, nl + 1, strlen(nl + 1) + 1);
        }
}

static void on_signal(int sig) {
        (void)sig;
        stop = 1;
}

int main(int argc, char **argv) {
        struct pollfd pfd[MAX_CHANS];

        if (argc != 3) {
                fprintf(stderr, "usage: %s TESTBED LOG\n", argv[0]);
                return 2;
        }
        tb = argv[1];
        log_path = argv[2];
        if (!(logfile = fopen(argv[2], "ae")))
                die(argv[2]);
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        setup();
        if (n_chans == MAX_CHANS) {
                errno = ENOSPC;
                die("too many FIFOs");
        }
        add_sync();
        printf("ready\n");
        fflush(stdout);
        while (!stop) {
                for (size_t i = 0; i < n_chans; i++)
                        pfd[i] = (struct pollfd){.fd = chans[i].fd_r, .events = POLLIN};
                poll(pfd, n_chans, 100);
                /* A device's writes come in kind order (override, unbind, probe, then a test's
                 * sync). Reading the FIFOs in reverse order means every record read has the
                 * earlier-kind records written before it read too; handling them in kind order
                 * then replays them as the kernel would have seen them. */
                for (int kind = CH_KINDS - 1; kind >= 0; kind--)
                        for (size_t i = 0; i < n_chans; i++)
                                if ((int)chans[i].kind == kind)
                                        fill(&chans[i]);
                for (int kind = 0; kind < CH_KINDS; kind++)
                        for (size_t i = 0; i < n_chans; i++)
                                if ((int)chans[i].kind == kind)
                                        drain(&chans[i]);
        }
        fclose(logfile);
        return 0;
}
