/* The SQLite state store. Owns the schema and every SQL statement of the product.
 * It knows nothing of the device model or the rules: callers hand it plain values (struct
 * db_device, struct db_rule_ref) and get plain values back.
 * Functions return 0 / -errno (db_strerror() words them); -EBUSY only if the lock could not be had
 * within DB_LOCK_WAIT_MS (which is long: many helpers write at once and none may lose a row);
 * -EUCLEAN when the file is corrupt. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;

#define DB_SCHEMA_VERSION 3                 /* PRAGMA user_version of a database this code created */
#define DB_WAL_TRUNCATE_BYTES (1024 * 1024) /* a closer checkpoints and truncates a larger WAL */
#define DB_BUSY_TIMEOUT_MS 30000            /* SQLite busy_timeout: one wait for the lock */
#define DB_LOCK_WAIT_MS 120000              /* a write retries the lock this long in all before -EBUSY */
#define DB_IGNORED_MAX 1000                 /* rows kept in the ignored table */
#define DB_STR_MAX 4096 /* longest string stored (device strings, errors); longer is cut */

/* Lifecycle state of an attachment row. */
enum db_state {
        DB_PENDING = 0, /* decided, VM not running: reconcile attaches it later */
        DB_ATTACHING,   /* intent recorded, VMM call under way (or the helper died) */
        DB_ATTACHED,
        DB_DETACHING, /* device_del sent, guest has not released it yet */
        DB_DETACHED,  /* closed */
        DB_FAILED,    /* the VMM refused; closed */
};

/* A device as recorded: its identity, as plain values. Strings may be NULL. */
struct db_device {
        const char *kind;    /* "usb", "pci", "evdev" (required) */
        const char *devpath; /* udev DEVPATH (required) */
        const char *key;     /* key of user_choices for this device */
        bool has_ids;        /* vendor_id/product_id are known */
        uint16_t vendor_id, product_id;
        const char *vendor_name, *product_name, *serial;
        int busnum, devnum; /* <= 0: unknown */
        const char *port_path, *pci_address, *devnode;
};

/* The rule that decided an attachment, as history shows it. */
struct db_rule_ref {
        const char *section;     /* "usbPassthrough", ...; NULL: none */
        int entry, allow;        /* indexes; < 0: none */
        const char *description; /* may be NULL */
};

/* Returns "pending", "attaching", ... as stored in the database. */
const char *db_state_name(enum db_state s);

/* Words an error this module returned, in its terms ("database is locked by another process"). */
const char *db_strerror(int r);

/* An open attachment row. */
struct db_attachment {
        int64_t id;
        enum db_state state;
        char kind[8];                      /* "usb", "pci", "evdev" */
        char *devpath, *vm, *vmm_id, *bus; /* bus: QEMU root port ("" when none) */
        int crosvm_port;                   /* -1 when none */
        int busnum, devnum;
        uint16_t vendor_id, product_id;
        char *serial, *pci_address, *devnode, *error;
        bool cold_plugged; /* given on the VM's command line (cold-plug arguments) */
        int rule_entry;    /* index of the deciding entry in its kind's section, -1 */
};

/* Frees the strings of a and zeroes it. */
void db_attachment_clear(struct db_attachment *a);

#define DB_NO_STRICT_PERMS (1u << 0) /* accept a file or directory that is not root's alone (tests) */
#define DB_QUICK_CHECK (1u << 1)     /* db_open_repair: read the whole file to judge it */

/* Opens (creating file and directory as needed, mode 0600/0711) and migrates the database.
 * The database steers root programs, so unless flags has DB_NO_STRICT_PERMS the file and its
 * directory must be owned by root and writable by nobody else (-EPERM); a database path that is a
 * symbolic link is always refused (-ELOOP). The connection holds a shared flock on
 * PATH.repair-lock until db_close (see db_open_repair). Returns -EUCLEAN when the file is not a
 * usable SQLite database (corrupt): the caller decides whether to move it aside (db_open_repair,
 * db_move_aside); -EPROTONOSUPPORT when its schema is newer than DB_SCHEMA_VERSION; -EBUSY when a
 * lock could not be had within DB_LOCK_WAIT_MS. */
int db_open(const char *path, unsigned flags, struct db **ret);

/* Like db_open, but migrates no further than schema version max_version (1..DB_SCHEMA_VERSION).
 * For tests of the migration path. */
int db_open_version(const char *path, unsigned flags, int max_version, struct db **ret);

/* Closes; NULL-safe. */
void db_close(struct db *db);

/* Opens like db_open(); a file that is not a sound database (with DB_QUICK_CHECK: also by PRAGMA
 * quick_check, which reads the whole file) is moved aside (db_move_aside) and a new one created,
 * once even when many processes find the damage at once. The move waits (exclusive flock) until
 * no other connection has the file open, because SQLite finds PATH-wal/-shm by name.
 * Returns 1 when it moved the file aside (its new name in ret_moved, may be NULL), 0 when the
 * file was fine, or -errno. */
int db_open_repair(const char *path, unsigned flags, struct db **ret, char *ret_moved, size_t len);

/* Renames a broken database file (and its -wal/-shm) to PATH.corrupt-TIMESTAMP (UTC,
 * "20240501T120000Z", with "-N" appended if taken). ret_new_path (may be NULL) receives the new
 * name of PATH. Returns -ENOENT when PATH does not exist. */
int db_move_aside(const char *path, char *ret_new_path, size_t len);

/* A udev event, for ordering the events of one device: the last SEQNUM handled per DEVPATH is kept
 * (SEQNUM restarts at boot, hence the boot id). seqnum 0 means "not from udev" (a manual run):
 * never stale, nothing recorded. */
struct db_event_order {
        const char *devpath;
        uint64_t seqnum; /* <= INT64_MAX */
        const char *boot_id;
};

/* Returns 1 when an event of o->devpath with a seqnum >= o->seqnum was already handled in this
 * boot, else records o's seqnum and returns 0. Atomic among concurrent callers. The attach and
 * detach intents (db_attach_begin, db_detach_begin) do the same in their own transaction. */
int db_event_seqnum_check(struct db *db, const struct db_event_order *o);

/* Gets the open attachment (pending/attaching/attached/detaching) of devpath. Returns 1 and fills
 * ret when there is one, 0 when none. Strings absent in the row are NULL, except bus (""). */
int db_attachment_get(struct db *db, const char *devpath, struct db_attachment *ret);

/* Gets every open attachment, optionally only of vm (NULL: all VMs), ordered by vm and devpath.
 * Free with db_attachment_list_free (*ret is NULL when *ret_n is 0). */
int db_attachment_list(struct db *db, const char *vm, struct db_attachment **ret, size_t *ret_n);

/* Frees an array returned by db_attachment_list. */
void db_attachment_list_free(struct db_attachment *a, size_t n);

/* Records the intent to attach d to vm under vmm_id (may be NULL), decided by rule (may be NULL):
 * opens an attachment row in state (DB_ATTACHING or DB_PENDING) and writes a history row
 * ('started' or 'pending'), with the device identity and the deciding rule. An open row of the
 * same devpath (left by a killed helper) is closed first with error 'superseded'. With order (may be
 * NULL), the event is checked and recorded first, in the same transaction: a stale one returns 1
 * and writes nothing. Returns 0 and the row id in ret_id (may be NULL). */
int db_attach_begin(struct db *db, const struct db_event_order *order, const struct db_device *d,
                    const struct db_rule_ref *rule, const char *vm, const char *vmm_id, enum db_state state,
                    int64_t *ret_id);

/* Records the outcome of an attach: DB_ATTACHED (with crosvm_port >= 0 / bus non-NULL when known),
 * DB_PENDING (VM not running), DB_FAILED (error text; closes the row). Writes a history row.
 * The row must be open and not detaching: else -ENOENT. Other states: -EINVAL. */
int db_attach_finish(struct db *db, int64_t id, enum db_state state, int crosvm_port, const char *bus,
                     const char *error);

/* Records as attached a device found already in the VM (reconcile adopting it): like
 * db_attach_finish(DB_ATTACHED) with detail (not an error) in history. */
int db_attach_adopted(struct db *db, int64_t id, int crosvm_port, const char *bus, const char *detail);

/* Records the intent to detach attachment id (state DB_DETACHING) with a history row whose detail
 * is why (may be NULL). order as for db_attach_begin (stale: 1, nothing written). -ENOENT when the
 * row is not open. */
int db_detach_begin(struct db *db, const struct db_event_order *order, int64_t id, const char *why);

/* Records a detach outcome: DB_DETACHED closes the row; DB_DETACHING keeps it open (guest did not
 * release the device yet); any error text is kept in history. -ENOENT when the row is not open;
 * other states: -EINVAL. */
int db_detach_finish(struct db *db, int64_t id, enum db_state state, const char *error);

/* Records that d was ignored and why. Bounded: one row per (devpath, reason) with a count and
 * first/last seen times, and the table is trimmed to a fixed maximum of rows. */
int db_record_ignored(struct db *db, const struct db_device *d, const char *reason);

/* The same for n devices in one transaction (reconcile's view of every present device). */
int db_record_ignored_many(struct db *db, const struct db_device *devs, const char *const *reasons,
                           size_t n);

/* Gets the user's choice for the device key: preferred VM (NULL when none; caller frees) and
 * keep-detached flag. Returns 1 when a choice exists, 0 when none (then *ret_vm = NULL,
 * *ret_keep_detached = false). */
int db_user_choice_get(struct db *db, const char *device_key, char **ret_vm, bool *ret_keep_detached);

/* Stores (replaces) the user's choice for the device key. vm may be NULL. */
int db_user_choice_set(struct db *db, const char *device_key, const char *vm, bool keep_detached);

/* A stored choice to import. */
struct db_choice {
        const char *key; /* device key (see user_choices) */
        const char *vm;  /* chosen VM, or NULL */
        bool keep_detached;
};

/* Imports choices from source (a file name: the older daemon's state file), once: returns 1 and
 * does nothing when source was imported before. A choice already stored for a key is kept. Each
 * stored one gets a history row (action 'choice', outcome 'recorded', by requested_by). The number
 * stored goes to *ret_stored (may be NULL). Returns 0, 1, or -errno. */
int db_import_choices(struct db *db, const char *source, const struct db_choice *choices, size_t n,
                      const char *requested_by, size_t *ret_stored);

/* ---- The control plane's memory (db-ops.c): who asks, choices, prompts, history, meta ---- */

#define DB_REQUESTER_MAX 128      /* bytes kept of a requester, with the NUL */
#define DB_HISTORY_MAX_ROWS 10000 /* rows one history query returns at most */

/* Who asks for what this connection writes from now on ("udev", "reconcile", "api unix uid=0",
 * ...): stored in attachments.requested_by, history.requested_by and user_choices.set_by. NULL or
 * "" unsets it. Longer text is cut. */
void db_set_requested_by(struct db *db, const char *who);

/* A stored user choice (user_choices), as vhotplugctl why shows it. */
struct db_choice_info {
        char *key; /* the key it is stored under (may be the ids on any port) */
        char *vm;  /* preferred VM; NULL when none */
        bool keep_detached;
        char *set_by, *updated_at; /* may be NULL */
};

/* Frees the strings of c and zeroes it. */
void db_choice_info_clear(struct db_choice_info *c);

/* Gets the stored choice for device_key, found as db_user_choice_get() finds it. Returns 1 and
 * fills ret, or 0 when none (ret zeroed). */
int db_choice_info_get(struct db *db, const char *device_key, struct db_choice_info *ret);

/* Stores the user's choice for d (by d->key): vm (NULL keeps the VM stored before) and
 * keep_detached, and writes a history row ('choice', 'recorded', vm, detail) with d's identity, in
 * one transaction. A keep-detached choice also forgets d's prompt: the user answered it. */
int db_choice_record(struct db *db, const struct db_device *d, const char *vm, bool keep_detached,
                     const char *detail);

/* A device waiting for the user to choose a VM (prompts). */
struct db_prompt {
        char *devpath, *device_key;
        char *allowed_vms; /* JSON array of VM names */
        char kind[8];
        bool has_ids;
        uint16_t vendor_id, product_id;
        char *vendor_name, *product_name, *serial, *port_path, *devnode;
        int busnum, devnum; /* 0: unknown */
        char *since;
};

void db_prompt_clear(struct db_prompt *p);
void db_prompt_list_free(struct db_prompt *p, size_t n);

/* Records that d waits for a choice among allowed_vms (a JSON array), decided by rule (may be NULL).
 * A new prompt also gets a history row ('prompt', 'waiting', detail); one that exists already is
 * left alone (*ret_new false). With order, the udev event is checked first in the same
 * transaction: stale returns 1 and writes nothing. Returns 0 otherwise. */
int db_prompt_add(struct db *db, const struct db_event_order *order, const struct db_device *d,
                  const struct db_rule_ref *rule, const char *allowed_vms, const char *detail,
                  bool *ret_new);

/* Forgets the prompt of devpath (if any). */
int db_prompt_remove(struct db *db, const char *devpath);

/* Gets the prompt of devpath: 1 and ret filled, or 0 when the device is not waiting. */
int db_prompt_get(struct db *db, const char *devpath, struct db_prompt *ret);

/* Gets every prompt, oldest first. Free with db_prompt_list_free. */
int db_prompt_list(struct db *db, struct db_prompt **ret, size_t *ret_n);

/* One history row. */
struct db_history {
        int64_t id;
        char time[32];
        char action[12], outcome[12], kind[8];
        bool has_ids;
        uint16_t vendor_id, product_id;
        int busnum, devnum;         /* 0: unknown */
        int crosvm_port;            /* -1: none */
        int rule_entry, rule_allow; /* -1: none */
        bool was_attached;          /* its attachment reached the VM at some point */
        char *vm, *devpath, *vendor_name, *product_name, *serial, *port_path, *pci_address, *devnode,
                *vmm_id, *rule_section, *rule_description, *detail, *error, *requested_by;
};

void db_history_list_free(struct db_history *h, size_t n);

/* Rows with id > after_id, oldest first, at most max (<= DB_HISTORY_MAX_ROWS). */
int db_history_after(struct db *db, int64_t after_id, size_t max, struct db_history **ret, size_t *ret_n);

/* The newest max rows (of devpath; NULL: of every device), oldest first. */
int db_history_recent(struct db *db, const char *devpath, size_t max, struct db_history **ret,
                      size_t *ret_n);

/* The id of the newest history row (0 when none). */
int db_history_last_id(struct db *db, int64_t *ret);

/* Facts about the database itself (meta): the value of key (malloc'd; NULL when unset; returns 1
 * when set, 0 when not), or sets it. */
int db_meta_get(struct db *db, const char *key, char **ret);
int db_meta_set(struct db *db, const char *key, const char *value);

/* ---- power and cold-plug memory (db-power.c) ---- */

/* Marks the open attachment id as given on its VM's command line (cold-plugged). -ENOENT when the
 * row is not open. */
int db_attachment_set_cold_plugged(struct db *db, int64_t id);

/* A device a suspend took out of its VM, for resume to put back. */
struct db_suspension {
        char *devpath, *device_key, *vm;
        char kind[8];               /* "usb", "pci", "evdev" */
        char *requested_by, *since; /* may be NULL */
        int rule_entry;             /* entry of its last attachment to vm, -1 when none */
};

/* Records devpath (of kind, taken out of vm) as suspended in boot boot_id; replaces an earlier
 * row of devpath. requested_by may be NULL. */
int db_suspended_add(struct db *db, const char *devpath, const char *device_key, const char *kind,
                     const char *vm, const char *boot_id, const char *requested_by);

/* Ends the suspension of devpath (none: nothing to do, 0). */
int db_suspended_remove(struct db *db, const char *devpath);

/* Returns 1 when devpath was suspended in boot boot_id (a suspension of another boot does not
 * count: a reboot ends it), else 0. */
int db_suspended_check(struct db *db, const char *devpath, const char *boot_id);

/* Deletes the suspensions of boots other than boot_id. */
int db_suspended_forget_boots(struct db *db, const char *boot_id);

/* Lists the suspensions of boot boot_id, of kind and vm (NULL: any), in the order they were made.
 * Free with db_suspension_list_free (*ret is NULL when *ret_n is 0). */
int db_suspended_list(struct db *db, const char *kind, const char *vm, const char *boot_id,
                      struct db_suspension **ret, size_t *ret_n);

/* Frees an array returned by db_suspended_list. */
void db_suspension_list_free(struct db_suspension *list, size_t n);
