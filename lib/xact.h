/* The attach/detach transaction, the one way a device enters or leaves a VM:
 *
 *   attach: decision → (device lock, the caller's) → record intent → VM lock → VMM → unlock →
 *           record outcome; retried (VM lock released while waiting) while QEMU cannot see a
 *           fresh USB device yet
 *   detach: record intent → VM lock → VMM → unlock → record outcome → PCI back to its host driver
 *
 * The helper's event flow (event.c), reconcile (reconcile.c) and the control plane's operations
 * only orchestrate: they decide what to do and call these functions under the device lock
 * (lock_take_device()); none of them talks to a VMM or writes an attachment itself. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "device.h"
#include "rule.h"
#include "vfio.h"
#include "vmm.h"

/* How long a crosvm guest that cannot take a USB device yet (booting) is given, at least. */
#define XACT_CROSVM_BOOT_WAIT_MS 15000

struct udev;

struct xact_ctx {
        const struct cfg *cfg;
        struct udev *udev;     /* to look at a device still present after its detach (USB
                                * authorization); NULL: not looked at */
        const char *db_path;   /* overrides cfg->general.database when set */
        const char *mountinfo; /* NULL: /proc/self/mountinfo */
        bool dry_run;
        bool no_strict_perms;               /* accept a database not root's alone (--no-strict-perms) */
        const struct db_event_order *order; /* the udev event being handled, checked for staleness
                                             * in the intent's transaction; NULL for others */
        const char *requested_by;           /* who asks ("udev", "reconcile", "api unix uid=0", ...): kept in
                                             * the records and history rows it writes; NULL: nobody named */
        int64_t deadline; /* now_ms() by which the request must be done (general.eventTimeoutMs):
                           * lock waits, QMP replies and retries all fit in it; 0: no bound */
};

enum xact_action { XACT_IGNORE = 0, XACT_ATTACH, XACT_DETACH };

/* What became of a request. */
enum xact_outcome {
        XACT_DECIDED = 0,   /* dry run: nothing done */
        XACT_DONE,          /* attached / detached */
        XACT_ALREADY,       /* replay: already in the wanted state, nothing sent */
        XACT_PENDING,       /* VM not running (or guest still releasing): recorded, reconcile finishes it */
        XACT_STALE,         /* a newer event for the device was already handled */
        XACT_KEPT_DETACHED, /* the user asked to keep this device detached */
        XACT_FAILED,        /* the VMM refused or failed, or a lock could not be had */
        XACT_SKIPPED,       /* ignored device */
        XACT_WAITING,       /* the entry asks the user to choose a VM: recorded as waiting (a prompt) */
        XACT_SUSPENDED,     /* taken out by a suspend: resume puts it back, nothing else does */
};

struct xact_result {
        enum xact_action action;
        enum xact_outcome outcome;
        struct rule_decision decision;
        char vm[CFG_MAX_VM_NAME + 1]; /* the VM acted on ("" when none) */
        char vmm_id[VMM_ID_MAX];      /* QEMU id ("" for crosvm) */
        int crosvm_port;              /* crosvm port, -1 when none */
        char error[512];              /* what failed, in words */
        char notice[PATH_MAX + 128];  /* something repaired on the way (a corrupt database moved aside) */
};

/* How a program logs a result: its priority (LOG_*) and MESSAGE_ID (LOG_MSGID_*, NULL: none). */
void xact_log_class(const struct xact_result *res, int *ret_level, const char **ret_msgid);

/* Names of actions and outcomes as printed and in JSON. */
const char *xact_action_name(enum xact_action a);
const char *xact_outcome_name(enum xact_outcome o);

/* Empties res for a request about a device of kind. */
void xact_result_init(struct xact_result *res, enum dev_kind kind);

/* Opens the state database (ctx->db_path, else the configuration's); a corrupt file is moved aside
 * and a new one started (with check, PRAGMA quick_check decides too), which res->notice then says.
 * What the connection writes is requested by ctx->requested_by. Returns 0 or -errno with
 * res->error set. */
int xact_open_db(const struct xact_ctx *ctx, bool check, struct db **ret, struct xact_result *res);

/* For a request that ends without an intent (nothing to attach or detach): checks and records
 * ctx->order. Returns 0; 1 when the event is stale (res says so); -errno (res->error says why). */
int xact_check_order(const struct xact_ctx *ctx, struct db *db, struct xact_result *res);

/* Completes a rule decision (rule_decide()) for d with what the rules cannot know: the user's
 * stored choice — a VM among the entry's, or keep detached — and whether a suspend of this boot
 * took it out (dec->suspended) (both need db; NULL skips them) and, for a
 * USB device the rules would pass, whether it holds a host-required mount (then the decision
 * becomes ignore). Returns 0, or -errno when the database could not be read. */
int xact_complete(const struct xact_ctx *ctx, struct db *db, struct dev *d, struct rule_decision *dec);

/* Attaches d to dec->vm (dec->action is RULE_ATTACH), recording intent and outcome in db.
 * The caller holds the device lock. Returns 0 with the outcome in res (DONE, PENDING or FAILED;
 * STALE when ctx->order turns out to be stale: nothing done),
 * or -errno when the database or a lock failed (res->error says which; outcome FAILED). */
int xact_attach(const struct xact_ctx *ctx, struct db *db, const struct dev *d,
                const struct rule_decision *dec, struct xact_result *res);

/* Detaches the recorded attachment a (why goes into history) and records the outcome: closed
 * (DONE), still detaching (PENDING: the guest has not released it), or FAILED (the record stays
 * open, with the error, for reconcile); STALE as for xact_attach. A PCI device that left its VM goes back to
 * its host driver. The caller holds the device lock. Returns 0, or -errno as xact_attach(). */
int xact_detach(const struct xact_ctx *ctx, struct db *db, const struct db_attachment *a, const char *why,
                struct xact_result *res);

/* Leaves d, claimed by an entry that asks the user to choose a VM (dec->choice_needed), waiting for
 * that choice: records a prompt (with a history row when it is new, which vhotplug-api announces as
 * usb_select_vm). The caller holds the device lock. Returns 0 with outcome WAITING (STALE when
 * ctx->order is stale), or -errno when the database failed (res->error says so). */
int xact_prompt(const struct xact_ctx *ctx, struct db *db, const struct dev *d,
                const struct rule_decision *dec, struct xact_result *res);

/* The VMs of dec's entry, for a prompt: a JSON array of names (malloc'd), NULL when out of memory. */
char *xact_allowed_vms_json(const struct rule_decision *dec);

/* Asks a's VM whether it has the device the record a says it has. Returns 1, 0 (also when the VM
 * is not running or left the configuration), or -errno when it could not tell (*ret_error says
 * why). */
int xact_confirm(const struct xact_ctx *ctx, const struct db_attachment *a, char **ret_error);

/* Closes the record a without asking its VM, which no longer has the device (why goes into
 * history); a PCI device whose detach was still pending goes back to its host driver. */
int xact_close(struct db *db, const struct db_attachment *a, const char *why);

/* Records as attached a device that vm already has (found by reconcile), under id or crosvm port. */
int xact_adopt(struct db *db, const struct dev *d, const struct rule_decision *dec, const char *id, int port,
               const char *why);

/* Deletes id from vm, a device of ours that no record and no present device accounts for.
 * Returns 0 (also when it was gone already), -EINPROGRESS when the guest has not released it yet,
 * or -errno with *ret_error set. */
int xact_remove_unaccounted(const struct xact_ctx *ctx, const struct cfg_vm *vm, const char *id,
                            char **ret_error);

/* Binds the PCI device at pci_address (and, per the policy of entry e, which may be NULL, its IOMMU
 * group) to vfio-pci: the one binding policy of hot-plug and cold-plug. A plan with a member that
 * holds a host-required mount (a disk controller sharing the group) is refused with -EBUSY before
 * anything is written. On success *plan says what was bound (release with vfio_plan_clear); on
 * failure nothing stays bound, the plan is empty and *ret_error says why. */
int xact_vfio_bind(const struct xact_ctx *ctx, const struct cfg_entry *e, const char *pci_address,
                   struct vfio_plan *plan, char **ret_error);

/* Gives the PCI device at pci_address to its host driver again when it has none: a second try
 * after every device of its IOMMU group left the VM (a host driver cannot take a device whose
 * group a VM still holds, so a group's first device given back may be left driverless). Best
 * effort; a device with a driver is left alone. */
void xact_pci_reprobe(const char *pci_address);

/* Records that d stays on the host, and why (bounded). */
int xact_record_ignored(struct db *db, const struct dev *d, const char *reason);

/* The rule that decided dec, as the database records it. */
struct db_rule_ref xact_rule_ref_of(const struct rule_decision *dec);

/* Opens d's record for vm under the VMM id (state attaching, an intent row in history), for a
 * device handed over outside the transaction (adopted, cold-plugged); *row identifies it. */
int xact_record_begin(struct db *db, const struct dev *d, const struct db_rule_ref *ref, const char *vm,
                      const char *id, int64_t *row);

/* The identity of d as the database records it; key receives the user-choice key (DEV_KEY_MAX). */
void xact_record_of(const struct dev *d, char key[static DEV_KEY_MAX], struct db_device *ret);
