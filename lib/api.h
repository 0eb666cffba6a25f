/* The vhotplug-api server: the older daemon's JSON protocol (proto.h) on unix, vsock and TCP
 * sockets, each connection served by a thread of its own, every request answered by the
 * operations layer (ops.h). Nothing stays resident: under systemd the sockets are activated and
 * the server returns when it has had no connection for a while.
 *
 * Requests are dispatched through one table (api.c) of action name -> handler:
 *
 *     static int act_usb_suspend(struct api_call *call);
 *     ...
 *     { "usb_suspend", act_usb_suspend },
 *
 * A handler reads its arguments from call->req (proto_get_*()), acts through ops_*() with
 * call->ctx, adds its answer to call->reply ({"result":"ok"} already) and returns 0; or returns
 * -errno with *call->error set (errmsg_set()), which becomes {"result":"failed","error":...}.
 * Actions listed without a handler answer "ACTION is not implemented yet". */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "config.h"
#include "ops.h"
#include "proto.h"

#define API_MAX_CLIENTS 256         /* connections served at once; more are refused with an error */
#define API_CLIENT_TIMEOUT_MS 60000 /* a client that sends nothing this long is closed (not a listener) */
#define API_SEND_TIMEOUT_MS 10000   /* a client that does not read its replies this long is closed */
#define API_IDLE_EXIT_MS 30000      /* socket-activated: return after this long with no connection */

struct api_conn;

/* One request being answered. */
struct api_call {
        const struct ops_ctx *ctx; /* configuration, database, requester, udev */
        const struct proto_request *req;
        struct cJSON *reply;   /* {"result":"ok"}: add the answer's members */
        char **error;          /* set it and return < 0 to fail the request */
        struct api_conn *conn; /* the connection (enable_notifications) */
};

typedef int (*api_handler)(struct api_call *call);

/* A listening socket. */
struct api_listener {
        int fd;
        int family; /* AF_UNIX, AF_VSOCK, AF_INET, AF_INET6 */
        char name[ADDR_TEXT_MAX];
};

/* Something worth logging, for the program (lib/ does not log). level: LOG_* of syslog.h. */
typedef void (*api_note_fn)(void *userdata, int level, const char *msg);

struct xact_result;
/* What became of one device of a request that moves devices (usb_attach, pci_detach, usb_suspend,
 * ...), for the program's journal record: request is the action, requested_by who asked ("api unix
 * uid=0"), what the device in words (dev_describe), res the transaction's result. */
typedef void (*api_record_fn)(void *userdata, const char *request, const char *requested_by,
                              const char *devpath, const char *what, const struct xact_result *res);

struct api_opts {
        const struct cfg *cfg;
        const char *db_path;   /* NULL: cfg's */
        const char *mountinfo; /* NULL: /proc/self/mountinfo */
        bool no_strict_perms;
        const struct api_listener *listeners;
        size_t n_listeners;
        int idle_exit_ms;      /* > 0: return after this long without a connection */
        int client_timeout_ms; /* <= 0: API_CLIENT_TIMEOUT_MS */
        int send_timeout_ms;   /* <= 0: API_SEND_TIMEOUT_MS */
        int max_clients;       /* <= 0: API_MAX_CLIENTS */
        api_note_fn note;      /* may be NULL */
        api_record_fn record;  /* may be NULL */
        void *note_userdata;   /* for both */
};

/* The sockets systemd passed (LISTEN_PID, LISTEN_FDS; fds from 3), each checked to be a listening
 * stream socket. Returns their number (0 when not socket-activated), or -errno with *ret_error.
 * Unsets the variables, so that children do not take the sockets for theirs. */
int api_listeners_from_systemd(struct api_listener **ret, size_t *ret_n, char **ret_error);

/* Opens spec ("unix:PATH", "vsock:PORT", "tcp:HOST:PORT"; see addr.h), a unix socket with the
 * owner and mode general.api gives (mode 0600 when it gives none). Names of users or groups
 * unknown here are skipped, with a warning in *ret_warning (malloc'd, may be NULL). */
int api_listener_open(const char *spec, const struct cfg_api *api, struct api_listener *ret,
                      char **ret_warning, char **ret_error);

/* The specs general.api configures ("unix:/var/lib/vhotplug/vhotplug.sock", "vsock:2000", ...),
 * a NULL-terminated array (strv_free). Empty when the API is not enabled. */
int api_specs_from_config(const struct cfg_api *api, char ***ret);

/* Whether a vsock peer may talk to us (general.api.allowedCids; none listed: any). */
bool api_cid_allowed(const struct cfg_api *api, uint32_t cid);

/* Serves until api_stop() or, with idle_exit_ms, until idle; then waits (a while) for requests under
 * way to finish. Returns 0; 1 when some still run (o and its configuration stay in use until the
 * process ends); or -errno with *ret_error. */
int api_serve(const struct api_opts *o, char **ret_error);

/* Asks api_serve() to return; async-signal-safe. */
void api_stop(void);

/* Handles one request line of a connection (for tests and the fuzzer; the server calls it for
 * every line): returns the reply line (malloc'd, with its "\n"). ctx as for api_call; conn may be
 * NULL (then enable_notifications fails). */
char *api_handle_line(const struct ops_ctx *ctx, struct api_conn *conn, const char *line, size_t len);
