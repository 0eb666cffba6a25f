/* Statement plumbing shared by the statement files of db/: a per-connection cache of prepared
 * statements keyed by their SQL text, binding untrusted strings as bounded data, stepping. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db-internal.h"

void db_stmt_resetp(sqlite3_stmt **s) {
        if (!*s)
                return;
        sqlite3_reset(*s);
        sqlite3_clear_bindings(*s);
}

int db_prepare(struct db *db, const char *sql, sqlite3_stmt **ret) {
        size_t i;
        int rc;

        /* sql is one of the statement files' constant strings: its address identifies it. */
        for (i = 0; i < DB_STMT_MAX && db->stmt_sql[i]; i++)
                if (db->stmt_sql[i] == sql) {
                        *ret = db->stmt[i];
                        return 0;
                }
        if (i == DB_STMT_MAX)
                return -E2BIG; /* raise DB_STMT_MAX */
        rc = sqlite3_prepare_v3(db->sql, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->stmt[i], NULL);
        if (rc != SQLITE_OK)
                return db_errno(db->sql, rc);
        db->stmt_sql[i] = sql;
        *ret = db->stmt[i];
        return 0;
}

void db_statements_free(struct db *db) {
        for (size_t i = 0; i < DB_STMT_MAX; i++) {
                sqlite3_finalize(db->stmt[i]);
                db->stmt[i] = NULL;
                db->stmt_sql[i] = NULL;
        }
}

int db_step_done(struct db *db, sqlite3_stmt *s) {
        int rc = sqlite3_step(s);

        return rc == SQLITE_DONE ? 0 : db_errno(db->sql, rc == SQLITE_ROW ? SQLITE_MISUSE : rc);
}

int db_bind_text(sqlite3_stmt *s, int i, const char *v) {
        if (!v)
                return sqlite3_bind_null(s, i);
        return sqlite3_bind_text(s, i, v, (int)strnlen(v, DB_STR_MAX), SQLITE_STATIC);
}

int db_bind_int_if(sqlite3_stmt *s, int i, bool present, int64_t v) {
        return present ? sqlite3_bind_int64(s, i, v) : sqlite3_bind_null(s, i);
}

int db_bind_hex4(sqlite3_stmt *s, int i, bool present, uint16_t v) {
        char buf[5];

        if (!present)
                return sqlite3_bind_null(s, i);
        snprintf(buf, sizeof(buf), "%04x", v);
        return sqlite3_bind_text(s, i, buf, 4, SQLITE_TRANSIENT);
}

int db_bind_check(struct db *db, int rc) {
        return rc == SQLITE_OK ? 0 : db_errno(db->sql, rc);
}

int db_exec1(struct db *db, const char *sql, const char *text, int64_t num) {
        _cleanup_reset_ sqlite3_stmt *s = NULL;
        int r = db_prepare(db, sql, &s);

        if (r < 0)
                return r;
        r = db_bind_check(db, text ? db_bind_text(s, 1, text) : sqlite3_bind_int64(s, 1, num));
        return r < 0 ? r : db_step_done(db, s);
}

char *db_column_strdup(sqlite3_stmt *s, int i, bool *oom) {
        const unsigned char *t = sqlite3_column_text(s, i);
        int n = sqlite3_column_bytes(s, i);
        char *p;

        if (!t)
                return NULL;
        p = malloc((size_t)n + 1);
        if (!p) {
                *oom = true;
                return NULL;
        }
        memcpy(p, t, (size_t)n);
        p[n] = '\0';
        return p;
}

uint16_t db_column_hex4(sqlite3_stmt *s, int i) {
        const char *t = (const char *)sqlite3_column_text(s, i);

        return t ? (uint16_t)strtoul(t, NULL, 16) : 0;
}

int db_column_int_or(sqlite3_stmt *s, int i, int none) {
        return sqlite3_column_type(s, i) == SQLITE_NULL ? none : sqlite3_column_int(s, i);
}
