/* The state database schema, as forward migrations (db_open applies the missing ones).
 * Never edit a shipped step: add a new one. Comments inside CREATE statements are kept by SQLite,
 * so `sqlite3 state.db .schema` shows them to administrators.
 *
 * Timestamps are ISO-8601 UTC text with milliseconds ("2024-05-01T12:00:00.123Z"): they sort as
 * text and work with SQLite's date functions (julianday, strftime, datetime). */
#include "schema.h"

/* The SQL keeps its own layout (one line of SQL per C line, as .schema shows it). */
/* clang-format off */
#define NOW "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
#define OPEN_STATES "('pending', 'attaching', 'attached', 'detaching')"

/* The device identity a history row and an ignored row copy (the same text in both tables). */
#define IDENTITY_COLUMNS \
"        kind TEXT,\n" \
"        vendor_id TEXT,\n" \
"        product_id TEXT,\n" \
"        vendor_name TEXT,\n" \
"        product_name TEXT,\n" \
"        serial TEXT,\n" \
"        busnum INTEGER,\n" \
"        devnum INTEGER,\n" \
"        port_path TEXT,\n" \
"        pci_address TEXT,\n" \
"        devnode TEXT,\n"

/* The deciding rule of a row of table t (a or h), as the views show it: "usbPassthrough[2].allow[0]". */
#define RULE_OF(t) \
"        " t ".rule_section || '[' || " t ".rule_entry || ']'\n" \
"                || coalesce('.allow[' || " t ".rule_allow || ']', '') AS rule,\n"

/* The history table's indexes and its append-only trigger. */
#define HISTORY_INDEXES \
"CREATE INDEX history_time ON history(time);\n" \
"CREATE INDEX history_devpath ON history(devpath);\n" \
"CREATE INDEX history_attachment ON history(attachment_id);\n" \
"CREATE TRIGGER history_append_only BEFORE UPDATE ON history\n" \
"BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;\n"

/* What a history row says of the step beyond the device (the same text in every version). */
#define STEP_COLUMNS \
"        vmm_id TEXT,\n" \
"        bus TEXT,\n" \
"        crosvm_port INTEGER,\n" \
"        rule_section TEXT,\n" \
"        rule_entry INTEGER,\n" \
"        rule_allow INTEGER,\n" \
"        rule_description TEXT,\n" \
"        detail TEXT,                      -- why (e.g. the reason of a detach)\n"

#define CURRENT_ATTACHMENTS_VIEW(extra) \
"CREATE VIEW current_attachments -- what is attached (or on its way) to which VM now\n" \
"AS SELECT a.vm, a.state, a.kind, a.devpath,\n" \
"        a.vendor_id || ':' || a.product_id AS ids, a.vendor_id, a.product_id,\n" \
"        a.vendor_name, a.product_name, a.serial, a.busnum, a.devnum, a.port_path,\n" \
"        a.pci_address, a.devnode, a.vmm_id, a.bus, a.crosvm_port,\n" \
RULE_OF("a") \
"        a.rule_description, coalesce(a.attached_at, a.created_at) AS since, a.error,\n" \
"        a.id AS attachment_id" extra "\n" \
"FROM attachments a WHERE a.state IN " OPEN_STATES "\n" \
"ORDER BY a.vm, a.devpath;\n"

/* The views over history, as version 2 made them; version 3 remakes them with columns added
 * (extra) over the rebuilt table. */
#define ATTACH_HISTORY_VIEW(comment, extra) \
"CREATE VIEW attach_history -- " comment "\n" \
"AS SELECT h.id, h.time, h.action, h.outcome, h.vm, h.kind, h.devpath,\n" \
"        h.vendor_id || ':' || h.product_id AS ids, h.vendor_id, h.product_id,\n" \
"        h.vendor_name, h.product_name, h.serial, h.busnum, h.devnum, h.port_path,\n" \
"        h.pci_address, h.devnode, h.vmm_id, h.bus, h.crosvm_port,\n" \
RULE_OF("h") \
"        h.rule_description, h.detail, h.error,\n" \
"        h.attachment_id, a.state AS attachment_state" extra "\n" \
"FROM history h LEFT JOIN attachments a ON a.id = h.attachment_id\n" \
"ORDER BY h.id;\n"

#define FAILURES_VIEW(extra) \
"CREATE VIEW failures -- attaches that failed and detaches that stalled with an error, newest first\n" \
"AS SELECT h.time, h.action, h.outcome, h.vm, h.kind, h.devpath,\n" \
"        h.vendor_id || ':' || h.product_id AS ids, h.vendor_name, h.product_name, h.serial,\n" \
"        h.busnum, h.devnum, h.pci_address,\n" \
RULE_OF("h") \
"        h.rule_description, h.error, h.attachment_id" extra "\n" \
"FROM history h WHERE h.outcome = 'failed' OR (h.outcome = 'detaching' AND h.error IS NOT NULL)\n" \
"ORDER BY h.time DESC, h.id DESC;\n"

/* Version 1: the tables. */
static const char schema_v1[] =
"CREATE TABLE attachments ( -- one row per attach lifecycle of a device, from decision to detach\n"
"        id INTEGER PRIMARY KEY,\n"
"        devpath TEXT NOT NULL,            -- udev DEVPATH, '/devices/...'\n"
"        kind TEXT NOT NULL CHECK (kind IN ('usb', 'pci', 'evdev')),\n"
"        device_key TEXT,                  -- key of user_choices\n"
"        vendor_id TEXT,                   -- 4 lower-case hex digits (PCI: vendor)\n"
"        product_id TEXT,                  -- 4 lower-case hex digits (PCI: device)\n"
"        vendor_name TEXT,\n"
"        product_name TEXT,                -- evdev: the input device's name\n"
"        serial TEXT,\n"
"        busnum INTEGER,\n"
"        devnum INTEGER,\n"
"        port_path TEXT,                   -- '3.2': USB ports behind the root hub\n"
"        pci_address TEXT,\n"
"        devnode TEXT,\n"
"        vm TEXT NOT NULL,\n"
"        vmm_id TEXT,                      -- QEMU device id\n"
"        bus TEXT NOT NULL DEFAULT '',     -- QEMU pcie-root-port used, '' when none\n"
"        crosvm_port INTEGER,              -- port crosvm returned\n"
"        state TEXT NOT NULL CHECK (state IN ('pending', 'attaching', 'attached', 'detaching',\n"
"                                             'detached', 'failed')),\n"
"        rule_section TEXT,                -- 'usbPassthrough', 'pciPassthrough', 'evdevPassthrough'\n"
"        rule_entry INTEGER,               -- index of the entry in its section\n"
"        rule_allow INTEGER,               -- index of the allow rule in the entry\n"
"        rule_description TEXT,\n"
"        created_at TEXT NOT NULL DEFAULT (" NOW "),\n"
"        attached_at TEXT,                 -- NULL: never attached\n"
"        closed_at TEXT,                   -- set when state becomes detached or failed\n"
"        updated_at TEXT NOT NULL DEFAULT (" NOW "),\n"
"        error TEXT                        -- last error\n"
");\n"
"-- At most one open attachment per device.\n"
"CREATE UNIQUE INDEX attachments_open_devpath ON attachments(devpath)\n"
"        WHERE state IN " OPEN_STATES ";\n"
"CREATE INDEX attachments_open_vm ON attachments(vm) WHERE state IN " OPEN_STATES ";\n"
"CREATE INDEX attachments_devpath ON attachments(devpath);\n"
"\n"
"CREATE TABLE history ( -- append-only log of every attach and detach step\n"
"        id INTEGER PRIMARY KEY,\n"
"        time TEXT NOT NULL DEFAULT (" NOW "),\n"
"        attachment_id INTEGER REFERENCES attachments(id) ON DELETE SET NULL,\n"
"        action TEXT NOT NULL CHECK (action IN ('attach', 'detach')),\n"
"        outcome TEXT NOT NULL CHECK (outcome IN ('started', 'attached', 'pending', 'failed',\n"
"                                                 'detaching', 'detached')),\n"
"        vm TEXT,\n"
"        devpath TEXT NOT NULL,\n"
IDENTITY_COLUMNS
STEP_COLUMNS
"        error TEXT\n"
");\n"
HISTORY_INDEXES
"\n"
"CREATE TABLE ignored ( -- devices no rule claimed; one row per (devpath, reason), trimmed\n"
"        id INTEGER PRIMARY KEY,\n"
"        devpath TEXT NOT NULL,\n"
"        reason TEXT NOT NULL,\n"
IDENTITY_COLUMNS
"        first_seen TEXT NOT NULL DEFAULT (" NOW "),\n"
"        last_seen TEXT NOT NULL DEFAULT (" NOW "),\n"
"        count INTEGER NOT NULL DEFAULT 1,\n"
"        UNIQUE (devpath, reason)\n"
");\n"
"CREATE INDEX ignored_last_seen ON ignored(last_seen);\n"
"\n"
"CREATE TABLE seqnums ( -- last udev SEQNUM handled per DEVPATH, to drop stale events\n"
"        devpath TEXT PRIMARY KEY,\n"
"        seqnum INTEGER NOT NULL,\n"
"        boot_id TEXT NOT NULL,            -- SEQNUM restarts at boot\n"
"        updated_at TEXT NOT NULL DEFAULT (" NOW ")\n"
");\n"
"CREATE INDEX seqnums_boot ON seqnums(boot_id);\n"
"\n"
"CREATE TABLE user_choices ( -- per-device choices: preferred VM among allowedVms, keep detached\n"
"        device_key TEXT PRIMARY KEY,      -- 'usb:VID:PID:SERIAL', 'usb:VID:PID@PORTPATH', ...\n"
"        vm TEXT,\n"
"        keep_detached INTEGER NOT NULL DEFAULT 0 CHECK (keep_detached IN (0, 1)),\n"
"        updated_at TEXT NOT NULL DEFAULT (" NOW ")\n"
");\n"
"PRAGMA user_version = 1;\n";

/* Version 2: the documented views (README "Querying the history"). */
static const char schema_v2[] =
CURRENT_ATTACHMENTS_VIEW("")
"\n"
ATTACH_HISTORY_VIEW("every attach/detach step, with the attachment's state now", "")
"\n"
FAILURES_VIEW("")
"\n"
"CREATE VIEW ignored_devices -- devices left on the host and why, most recently seen first\n"
"AS SELECT i.last_seen, i.first_seen, i.count, i.reason, i.kind, i.devpath,\n"
"        i.vendor_id || ':' || i.product_id AS ids, i.vendor_name, i.product_name, i.serial,\n"
"        i.busnum, i.devnum, i.port_path, i.pci_address, i.devnode\n"
"FROM ignored i ORDER BY i.last_seen DESC, i.id DESC;\n"
"\n"
"CREATE VIEW attachment_durations -- how long each attachment lasted (open ones: until now)\n"
"AS SELECT a.id AS attachment_id, a.vm, a.kind, a.devpath,\n"
"        a.vendor_id || ':' || a.product_id AS ids, a.vendor_name, a.product_name, a.serial,\n"
"        a.pci_address, a.attached_at, a.closed_at,\n"
"        a.state IN " OPEN_STATES " AS still_open,\n"
"        round((julianday(coalesce(a.closed_at, 'now')) - julianday(a.attached_at)) * 86400.0, 3)\n"
"                AS seconds\n"
"FROM attachments a WHERE a.attached_at IS NOT NULL\n"
"ORDER BY a.attached_at;\n"
"PRAGMA user_version = 2;\n";


/* Version 3: the control plane's memory. Who asked for each step (requested_by), devices handed to
 * a VM on its command line (cold_plugged), devices waiting for the user to choose a VM (prompts),
 * devices taken out by a suspend (suspended), where a stored choice came from (set_by), and facts
 * about the database itself (meta, e.g. that the old daemon's state was imported). History gains
 * the rows of choices and prompts: its table is rebuilt with wider checks (SQLite cannot alter a
 * CHECK), the views over it with it. */
static const char schema_v3[] =
"ALTER TABLE attachments ADD COLUMN cold_plugged INTEGER NOT NULL DEFAULT 0; -- given on the VM's command line\n"
"ALTER TABLE attachments ADD COLUMN requested_by TEXT; -- 'udev', 'reconcile', 'api unix uid=0', 'vhotplugctl', ...\n"
"ALTER TABLE user_choices ADD COLUMN set_by TEXT;      -- who stored the choice\n"
"\n"
"DROP VIEW attach_history;\n"
"DROP VIEW failures;\n"
"CREATE TABLE history_v3 ( -- append-only log of every attach and detach step, choice and prompt\n"
"        id INTEGER PRIMARY KEY,\n"
"        time TEXT NOT NULL DEFAULT (" NOW "),\n"
"        attachment_id INTEGER REFERENCES attachments(id) ON DELETE SET NULL,\n"
"        action TEXT NOT NULL CHECK (action IN ('attach', 'detach', 'choice', 'prompt')),\n"
"        outcome TEXT NOT NULL CHECK (outcome IN ('started', 'attached', 'pending', 'failed',\n"
"                                                 'detaching', 'detached', 'recorded', 'waiting')),\n"
"        vm TEXT,\n"
"        devpath TEXT NOT NULL,\n"
IDENTITY_COLUMNS
STEP_COLUMNS
"        error TEXT,\n"
"        requested_by TEXT                 -- who asked\n"
");\n"
"INSERT INTO history_v3 (id, time, attachment_id, action, outcome, vm, devpath, kind, vendor_id,\n"
"        product_id, vendor_name, product_name, serial, busnum, devnum, port_path, pci_address, devnode,\n"
"        vmm_id, bus, crosvm_port, rule_section, rule_entry, rule_allow, rule_description, detail, error)\n"
"SELECT id, time, attachment_id, action, outcome, vm, devpath, kind, vendor_id,\n"
"        product_id, vendor_name, product_name, serial, busnum, devnum, port_path, pci_address, devnode,\n"
"        vmm_id, bus, crosvm_port, rule_section, rule_entry, rule_allow, rule_description, detail, error\n"
"FROM history;\n"
"DROP TABLE history;\n"
"ALTER TABLE history_v3 RENAME TO history;\n"
HISTORY_INDEXES
"\n"
ATTACH_HISTORY_VIEW("every step, with the attachment's state now and who asked", ", h.requested_by")

"\n"
FAILURES_VIEW(", h.requested_by")
"\n"
"CREATE TABLE prompts ( -- devices waiting for the user to choose a VM among their entry's allowedVms\n"
"        devpath TEXT PRIMARY KEY,\n"
"        device_key TEXT NOT NULL,         -- key of user_choices\n"
"        allowed_vms TEXT NOT NULL,        -- JSON array of VM names\n"
IDENTITY_COLUMNS
"        since TEXT NOT NULL DEFAULT (" NOW ")\n"
");\n"
"\n"
"CREATE TABLE suspended ( -- devices a suspend took out of their VM, for resume to put back\n"
"        devpath TEXT PRIMARY KEY,\n"
"        device_key TEXT NOT NULL,\n"
"        kind TEXT NOT NULL CHECK (kind IN ('usb', 'pci', 'evdev')),\n"
"        vm TEXT NOT NULL,\n"
"        boot_id TEXT NOT NULL,            -- a suspension ends with the boot it was made in\n"
"        requested_by TEXT,\n"
"        since TEXT NOT NULL DEFAULT (" NOW ")\n"
");\n"
"CREATE INDEX suspended_vm ON suspended(vm);\n"
"\n"
"CREATE TABLE meta ( -- facts about this database ('imported vhotplug.state', ...)\n"
"        key TEXT PRIMARY KEY,\n"
"        value TEXT,\n"
"        updated_at TEXT NOT NULL DEFAULT (" NOW ")\n"
");\n"
"\n"
"DROP VIEW current_attachments;\n"
CURRENT_ATTACHMENTS_VIEW(", a.cold_plugged, a.requested_by")
"PRAGMA user_version = 3;\n";

/* clang-format on */

const char *const db_schema_migrations[] = {
        schema_v1,
        schema_v2,
        schema_v3,
};

const int db_schema_n_migrations = sizeof(db_schema_migrations) / sizeof(db_schema_migrations[0]);
