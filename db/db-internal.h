/* Shared only inside db/: the connection, the file's transactions (db-file.c) and the statement
 * plumbing (db-stmt.c) that the statement files (db.c, ...) use. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

#include "cleanup.h"
#include "db.h"

#define DB_STMT_MAX 64 /* cached statements per connection, over all statement files */

struct db {
        sqlite3 *sql;
        const char *stmt_sql[DB_STMT_MAX]; /* the SQL text each cached statement was made from */
        sqlite3_stmt *stmt[DB_STMT_MAX];
        int lock_fd;  /* flock on PATH.repair-lock: shared while open, see db_open_repair */
        int write_fd; /* PATH.write-lock: exclusive for the length of a write transaction */
        char requested_by[DB_REQUESTER_MAX]; /* who asks for what this connection writes ("" unset) */
        int version; /* schema version of the file (older only in tests of the migrations) */
};

/* The connection's requester for a requested_by column: NULL when unset. */
const char *db_requester(const struct db *db);

/* Within a write transaction: 1 when the udev event o is stale, else records it and returns 0
 * (db_event_seqnum_check's work). */
int db_event_order_check_tx(struct db *db, const struct db_event_order *o);

/* Within a write transaction: forgets the prompt of devpath (the device got a VM, or left). */
int db_prompt_delete_tx(struct db *db, const char *devpath);

/* Maps a SQLite result code to -errno (0 for OK/ROW/DONE). sql (may be NULL) gives the OS error
 * behind an I/O failure. */
int db_errno(sqlite3 *sql, int rc);

/* Starts a write transaction (BEGIN IMMEDIATE), waiting for the write lock at most
 * DB_LOCK_WAIT_MS. */
int db_tx_begin(struct db *db);

/* Commits when r >= 0, else rolls back. Returns r, or the commit's error. */
int db_tx_end(struct db *db, int r);

/* The cached statement for sql, a string constant (its address is the key), prepared on first
 * use. Reset it after use (_cleanup_reset_). */
int db_prepare(struct db *db, const char *sql, sqlite3_stmt **ret);

/* Resets a statement and clears its bindings; for _cleanup_reset_. */
void db_stmt_resetp(sqlite3_stmt **s);
#define _cleanup_reset_ _cleanup_(db_stmt_resetp)

/* Finalizes the connection's cached statements. */
void db_statements_free(struct db *db);

/* Steps a statement that returns no rows. */
int db_step_done(struct db *db, sqlite3_stmt *s);

/* Binders returning SQLite result codes. Text may hold any byte: it is bound as data with an
 * explicit length capped at DB_STR_MAX; NULL binds NULL. hex4 binds "%04x", or NULL when absent. */
int db_bind_text(sqlite3_stmt *s, int i, const char *v);
int db_bind_int_if(sqlite3_stmt *s, int i, bool present, int64_t v);
int db_bind_hex4(sqlite3_stmt *s, int i, bool present, uint16_t v);

/* Binds a device's identity as ?first (kind), ?first+1 (vendor_id) ... in the column order the
 * statements share: kind, vendor_id, product_id, vendor_name, product_name, serial, busnum, devnum,
 * port_path, pci_address, devnode. Returns a SQLite result code. */
int db_bind_device(sqlite3_stmt *s, int first, const struct db_device *d);

/* Maps a binder's result code to 0 / -errno. */
int db_bind_check(struct db *db, int rc);

/* Runs sql, a statement that returns no rows, with ?1 bound to text, or to num when text is NULL. */
int db_exec1(struct db *db, const char *sql, const char *text, int64_t num);

/* Column values: a malloc'd copy of a text column (NULL for NULL; *oom set when out of memory),
 * a 4-hex-digit id column (0 when NULL), an integer column (none when NULL). */
char *db_column_strdup(sqlite3_stmt *s, int i, bool *oom);
uint16_t db_column_hex4(sqlite3_stmt *s, int i);
int db_column_int_or(sqlite3_stmt *s, int i, int none);
