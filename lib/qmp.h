/* A small QMP (QEMU Machine Protocol) client on cJSON: one short-lived connection per use.
 * Everything the peer sends is untrusted: message size, bytes read per operation, queued events and
 * time are all bounded. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#include "cleanup.h"

#define QMP_MSG_MAX (1u << 20)   /* largest single JSON message accepted */
#define QMP_READ_MAX (16u << 20) /* bytes read per operation (connect, execute, wait) */
#define QMP_READ_MAX_TEXT "16 MiB"
#define QMP_EVENTS_MAX 64 /* events remembered while waiting for replies (oldest dropped) */

/* Splits a byte stream into JSON objects. Accepts any chunking, several objects per chunk, and
 * whitespace (" \t\r\n") between objects. Anything else between objects is garbage. */
struct qmp_parser {
        char *buf;
        size_t len, cap; /* bytes buffered, allocated */
        size_t pos;      /* bytes of buf already scanned */
        size_t depth;    /* nesting of the object being scanned, 0 between objects */
        bool in_string, escape;
        size_t max; /* largest message accepted (QMP_MSG_MAX unless changed after init) */
};

/* Initializes an empty parser. */
void qmp_parser_init(struct qmp_parser *p);

/* Frees what the parser buffers; it can be initialized again. */
void qmp_parser_done(struct qmp_parser *p);

/* Appends len bytes. Returns 0; -EMSGSIZE when more than 2 * max bytes would be buffered (feed in
 * chunks and drain with qmp_parser_next() in between); -ENOMEM. */
int qmp_parser_feed(struct qmp_parser *p, const void *data, size_t len);

/* Takes the next complete message out of the buffer. Returns 1 and sets *ret (an object, caller
 * frees); 0 when more bytes are needed; -EPROTO for garbage or a message that is not a JSON object;
 * -EMSGSIZE when a message grows past max. After an error the parser must not be used further. */
int qmp_parser_next(struct qmp_parser *p, cJSON **ret);

struct qmp;

/* Connects to the QMP unix socket at path, reads the greeting and negotiates capabilities, all
 * within timeout_ms. The timeout also bounds each later reply. Returns 0; -EHOSTDOWN when QEMU is
 * not there (socket missing, refused, or closed); -ETIMEDOUT when something listens but does not
 * greet in time (a hung QEMU, or another client holding its monitor); -EACCES; -ENAMETOOLONG;
 * -EPROTO when the peer does not speak QMP; -EMSGSIZE. */
int qmp_connect(const char *path, int timeout_ms, struct qmp **ret);

/* Closes the connection and frees queued events; NULL-safe. */
void qmp_close(struct qmp *q);

/* Runs command with optional arguments (an object, not taken over) and waits for the reply with
 * the matching "id"; events read meanwhile are queued. Returns 0 and, when ret_return is not NULL,
 * the "return" value (caller frees); -EREMOTEIO when QEMU answered with an error: its "desc" in
 * *ret_error (malloc'd) and its "class" in *ret_class when not NULL; -ETIMEDOUT; -EHOSTDOWN when
 * QEMU closed the connection; -EPROTO; -EMSGSIZE. */
int qmp_execute(struct qmp *q, const char *command, const cJSON *arguments, cJSON **ret_return,
                char **ret_class, char **ret_error);

/* Waits up to timeout_ms for the event named name whose data.device equals device (any device
 * when NULL); events queued earlier count. Returns 0 and the whole event when ret is not NULL
 * (caller frees); -ETIMEDOUT; -EHOSTDOWN; -EPROTO; -EMSGSIZE. */
int qmp_wait_event(struct qmp *q, const char *name, const char *device, int timeout_ms, cJSON **ret);

DEFINE_CLEANUP(struct qmp, qmp_close)
#define _cleanup_qmp_ _cleanup_(qmp_closep)
