/* Reconcile: make rules (desired), database (recorded) and VMs (actual) agree.
 * recon_plan() only reads; recon_apply() acts through the attach/detach transaction (xact.h)
 * under the same locks as the helper. The verdict for one device in one VM is recon_decide(), a
 * pure function of what is known about it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "xact.h"

struct cJSON;
struct udev;

enum recon_op {
        RECON_NONE,         /* agrees: nothing to do */
        RECON_ATTACH,       /* desired, the VM lacks it */
        RECON_REATTACH,     /* recorded as attached, the VM lost it (restart): close the record, attach */
        RECON_ADOPT,        /* the VM has it under our id, the database does not say so: record it */
        RECON_DETACH,       /* recorded or present in the VM, but gone from the host or no longer desired */
        RECON_REMOVE,       /* our id in the VM with no record and no device on the host: delete it */
        RECON_CLOSE,        /* a record the VM does not back (pending detach finished, VM left config) */
        RECON_FOREIGN,      /* a device someone else attached: reported, left alone */
        RECON_VM_DOWN,      /* VM not running: skipped */
        RECON_AUTH_DEFAULT, /* usbAuthorization: new USB devices are to start unauthorized */
        RECON_AUTHORIZE,    /* usbAuthorization: let the host use a USB device (hub, hostAllow) */
        RECON_DEAUTHORIZE,  /* usbAuthorization: take a USB device no one may have from the host */
};

/* What is known of one device with respect to one VM. */
struct recon_facts {
        bool present;       /* on the host */
        bool desired;       /* present, claimed by the rules for this VM, not kept detached */
        bool kept_detached; /* the user asked to keep it on the host */
        bool suspended;     /* a suspend of this boot took it out: only resume puts it back */
        bool cold_plugged;  /* its record here was given on the VM's command line */
        int row_state;      /* its open record's state (enum db_state), -1 when none */
        bool row_here;      /* that record is for this VM */
        bool in_vm;         /* this VM has it */
};

/* The action for one device in one VM, and why (a static string, into *ret_why). */
enum recon_op recon_decide(const struct recon_facts *f, const char **ret_why);

struct recon_item {
        enum recon_op op;
        char vm[CFG_MAX_VM_NAME + 1];
        char devpath[512];   /* "" for VM-only items */
        char what[160];      /* dev_describe() or the VM's device id */
        char id[VMM_ID_MAX]; /* QEMU id ("" for crosvm) */
        int port;            /* crosvm port, -1 when none */
        char why[256];
        bool done; /* acted on (not in a dry run) */
        bool failed;
        char error[512];
};

struct recon_plan {
        struct recon_item *items;
        size_t n;
        size_t n_devices;            /* present devices looked at */
        char notice[PATH_MAX + 128]; /* something repaired on the way (a corrupt database moved aside) */
        char info[PATH_MAX + 1024];  /* something done on the way (the older daemon's choices imported) */
        void *priv;                  /* what recon_apply() needs of the planning (devices, database) */
};

struct recon_opts {
        struct xact_ctx ctx; /* cfg, udev (also for enumerating the present devices), db_path, ... */
        char *const *vms;    /* limit to these VMs (NULL/0: all) */
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
