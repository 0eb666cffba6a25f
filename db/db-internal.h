/* Shared only between db/db-file.c (the file: open, migrate, repair, close, transactions) and
 * db/db.c (the statements). */
#pragma once

#include <sqlite3.h>

#include "db.h"

#define DB_STMT_MAX 32   /* cached statements per connection (db.c's query table) */

struct db {
        sqlite3 *sql;
        sqlite3_stmt *stmt[DB_STMT_MAX];
        int lock_fd;     /* flock on PATH.repair-lock: shared while open, see db_open_repair */
        int write_fd;    /* PATH.write-lock: exclusive for the length of a write transaction */
};

/* Maps a SQLite result code to -errno (0 for OK/ROW/DONE). sql (may be NULL) gives the OS error
 * behind an I/O failure. */
int db_errno(sqlite3 *sql, int rc);

/* Starts a write transaction (BEGIN IMMEDIATE), waiting for the write lock at most
 * DB_LOCK_WAIT_MS. */
int db_tx_begin(struct db *db);

/* Commits when r >= 0, else rolls back. Returns r, or the commit's error. */
int db_tx_end(struct db *db, int r);

/* Finalizes the connection's cached statements (db.c). */
void db_statements_free(struct db *db);
