/* Internal to db/: the schema as a list of forward migration steps. */
#pragma once

/* Step i (0-based) takes a database from user_version i to i + 1. Each step is one SQL script
 * (several statements) ending with its own PRAGMA user_version, run inside one transaction. */
extern const char *const db_schema_migrations[];
extern const int db_schema_n_migrations;
