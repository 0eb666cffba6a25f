/* One udev event, handled end to end: decide, lock, record, talk to the VMM, record (SPEC §2, §7).
 * This is the helper's whole job; helper/main.c only parses options and prints the result. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "device.h"
#include "rule.h"

struct udev;

enum event_action { EVENT_IGNORE = 0, EVENT_ATTACH, EVENT_DETACH };

/* What became of the event. */
enum event_outcome {
        EVENT_DECIDED = 0,  /* dry run: nothing done */
        EVENT_DONE,         /* attached / detached */
        EVENT_ALREADY,      /* replay: already in the wanted state, nothing sent */
        EVENT_PENDING,      /* VM not running: recorded, reconcile finishes it */
        EVENT_STALE,        /* a newer event for the device was already handled */
        EVENT_KEPT_DETACHED,/* the user asked to keep this device detached */
        EVENT_FAILED,       /* the VMM refused or failed */
        EVENT_SKIPPED,      /* ignored device */
};

struct event_ctx {
        const struct cfg *cfg;
        struct udev *udev;
        const char *db_path;    /* overrides cfg->general.database when set */
        const char *mountinfo;  /* NULL: /proc/self/mountinfo */
        bool dry_run;
};

struct event {
        char action[16];        /* "add", "remove", "bind", "change" */
        uint64_t seqnum;        /* 0 when not from udev */
        struct dev *dev;        /* owned */
};

struct event_result {
        enum event_action action;
        enum event_outcome outcome;
        struct rule_decision decision;
        char vm[128];           /* the VM acted on ("" when none) */
        char vmm_id[64];        /* QEMU id / "port N" for crosvm */
        char error[512];        /* what failed, in words */
        char notice[PATH_MAX + 128]; /* something repaired on the way (a corrupt database moved aside) */
};

/* Builds the event from ACTION and DEVPATH (arguments) or from the udev environment (envp, used
 * when action is NULL). On add the device is read from sysfs and completed from envp; on remove
 * (sysfs gone) from envp alone, or a minimal device of that DEVPATH. Returns -EINVAL for a
 * malformed event (message in err), -ENODEV when an add names no device. */
int event_new(struct udev *udev, const char *action, const char *devpath, char *const *envp, struct event *ret,
              char *err, size_t errlen);

/* Frees the event's device. */
void event_clear(struct event *ev);

/* Handles the event. Returns 0 when handled (result says how, including EVENT_FAILED), or -errno
 * for an error outside the VMM (database, lock), with result->error set. */
int event_handle(const struct event_ctx *ctx, const struct event *ev, struct event_result *result);

struct db;
struct db_attachment;

/* For a USB device: whether it holds a host-required mount (sets d->host_mount). 1, 0 or -errno. */
int event_check_host_mount(const struct event_ctx *ctx, struct dev *d);

/* Attaches d to res->decision.vm (decision already made) under the VM lock, recording intent and
 * outcome. The caller holds the device lock. Returns 0 (outcome in res) or -errno for a database or
 * lock failure. Shared by the helper and reconcile. */
int event_attach(const struct event_ctx *ctx, struct db *db, struct dev *d, struct event_result *res);

/* Detaches the recorded attachment a (why goes into history) under the VM lock and records the
 * outcome: closed, still detaching (guest has not released it), or failed. The caller holds the
 * device lock. */
int event_detach(const struct event_ctx *ctx, struct db *db, const struct db_attachment *a, const char *why,
                 struct event_result *res);

/* After a detach: hands a PCI device that is still on the host back from vfio-pci to its driver
 * (best effort). Other kinds need nothing. */
void event_give_back(const struct db_attachment *a);

/* The result as the helper's JSON object (SPEC §7). */
int event_result_to_json(const struct event *ev, const struct event_result *r, struct cJSON **ret);

/* Names of actions and outcomes as printed. */
const char *event_action_name(enum event_action a);
const char *event_outcome_name(enum event_outcome o);
