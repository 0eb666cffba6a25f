/* Reconcile: make rules (desired), database (recorded) and VMs (actual) agree (SPEC §7).
 * recon_plan() only reads; recon_apply() acts through the same event_attach/event_detach as the
 * helper, under the same locks. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "event.h"

struct cJSON;

enum recon_op {
        RECON_ATTACH,   /* desired, the VM lacks it */
        RECON_REATTACH, /* recorded as attached, the VM lost it (restart): close the record, attach */
        RECON_ADOPT,    /* the VM has it under our id, the database does not say so: record it */
        RECON_DETACH,   /* recorded or present in the VM, but gone from the host or no longer desired */
        RECON_REMOVE,   /* our id in the VM with no record and no device on the host: delete it */
        RECON_CLOSE,    /* a record the VM does not back (pending detach finished, VM left config) */
        RECON_FOREIGN,  /* a device someone else attached: reported, left alone */
        RECON_VM_DOWN,  /* VM not running: skipped */
};

struct recon_item {
        enum recon_op op;
        char vm[128];
        char devpath[512];    /* "" for VM-only items */
        char what[160];       /* dev_describe() or the VM's device id */
        char id[64];          /* QEMU id or crosvm port */
        char why[256];
        bool done;            /* acted on (not in a dry run) */
        bool failed;
        char error[512];
};

struct recon_plan {
        struct recon_item *items;
        size_t n;
        size_t n_devices;     /* present devices looked at */
        char notice[4224];    /* something repaired on the way (a corrupt database moved aside) */
        void *priv;           /* what recon_apply() needs of the planning (devices, database) */
};

struct recon_opts {
        struct event_ctx ctx;     /* cfg, udev, db_path, mountinfo, dry_run */
        char *const *vms;         /* limit to these VMs (NULL/0: all) */
        size_t n_vms;
};

/* Computes what must change. Reads devices, the database and each VM; changes nothing. */
int recon_plan(const struct recon_opts *o, struct recon_plan *ret, char *err, size_t errlen);

/* Carries out the plan's actions (not in a dry run). Returns the number of failed items. */
int recon_apply(const struct recon_opts *o, struct recon_plan *plan);

/* Frees a plan. */
void recon_plan_clear(struct recon_plan *plan);

/* "attach", "reattach", ... */
const char *recon_op_name(enum recon_op op);

/* The plan and its results as JSON. */
int recon_plan_to_json(const struct recon_plan *plan, bool dry_run, struct cJSON **ret);
