/* A client of vhotplug-api's protocol (proto.h), for vhotplugctl: connect, send a request line,
 * read reply and event lines. Lines from the server are untrusted like any peer's: bounded, and
 * parsed as JSON objects only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct cJSON;
struct client;

/* Connects to spec ("unix:PATH", "vsock:CID:PORT", "tcp:HOST:PORT") within timeout_ms. Returns 0,
 * or -errno with *ret_error ("Failed to connect to ...: ..."). */
int client_connect(const char *spec, int timeout_ms, struct client **ret, char **ret_error);

/* Closes; NULL-safe. */
void client_free(struct client *c);

/* Sends req as one line. Returns 0 or -errno with *ret_error. */
int client_send(struct client *c, struct cJSON *req, char **ret_error);

/* Reads the next line that is a JSON object, within timeout_ms (< 0: no limit). Returns 0 and the
 * object; -ETIMEDOUT; -ECONNRESET when the server closed the connection; -EBADMSG for a line
 * that is not a JSON object or is too long; -errno. *ret_error says which. */
int client_read(struct client *c, int timeout_ms, struct cJSON **ret, char **ret_error);

/* Sends req and reads its reply (the next object with "result"; events before it are skipped).
 * Returns 0 and the reply (whatever its result), or -errno as above. */
int client_request(struct client *c, struct cJSON *req, int timeout_ms, struct cJSON **ret,
                   char **ret_error);
