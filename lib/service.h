/* The helper's service mode: udev events arrive one message each on a SOCK_SEQPACKET unix socket
 * (sent by vhotplug-event, the udev rule's RUN program; systemd socket activation starts the
 * service), and each event is handled in a short-lived child process forked from the service, so
 * it inherits the loaded configuration and the service's sandbox.
 *
 * Order and concurrency: connections are accepted and read in arrival order (the socket is a FIFO;
 * udevd runs a device's events one after another). Events of one device (same DEVPATH) run one
 * after another in that order; events of different devices run concurrently, at most
 * svc_params.max_children at a time. The service exits when it has been idle (nothing queued, no
 * child) for svc_params.idle_exit_ms; with socket activation, a new event starts it again. On
 * SIGTERM or SIGINT it stops accepting, finishes every event it has accepted and returns: what
 * is still in the socket waits there for the next start. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "config.h"

#define SVC_MSG_MAX 65536 /* bytes in one event message (vhotplug-event sends no more) */
#define SVC_ENV_MAX 512   /* KEY=VALUE entries in one event */
#define SVC_KEY_MAX 256   /* bytes in one KEY */

/* One event as received: NUL-separated KEY=VALUE entries. */
struct svc_event {
        char **envp; /* NULL-terminated; points into the event's own copy of the message */
        size_t n_env;
        const char *devpath;    /* the first DEVPATH's value, never empty */
        struct svc_event *next; /* the service's queue */
};

/* Parses a message of len bytes (a copy is made). Entries without "=", with an empty KEY or a KEY
 * longer than SVC_KEY_MAX are left out; nothing else is interpreted. Returns 0, -ENODATA for an
 * empty message, -EMSGSIZE above SVC_MSG_MAX, -E2BIG above SVC_ENV_MAX entries, -EBADMSG without
 * a DEVPATH, -ENOMEM. *ret untouched on failure. */
int svc_event_parse(const void *msg, size_t len, struct svc_event **ret);

/* Frees one event (not its successors); NULL is ignored. */
void svc_event_free(struct svc_event *ev);

/* The listening socket systemd passed (socket activation): returns 1 with *ret_fd set when
 * LISTEN_PID is this process and LISTEN_FDS is 1, 0 when not socket-activated, -EINVAL when what
 * was passed is not one listening AF_UNIX SOCK_SEQPACKET socket. Unsets LISTEN_PID, LISTEN_FDS
 * and LISTEN_FDNAMES either way, so the event children do not see them. */
int svc_listen_fd_from_env(int *ret_fd);

/* Listens on PATH (SOCK_SEQPACKET, mode 0600), replacing a socket nobody listens on; the file
 * appears only once it listens. For running the service without systemd (tests, by hand).
 * Returns 0 and the fd (close-on-exec), -EADDRINUSE when a service listens there already,
 * -EEXIST when PATH is something other than a socket, -ENAMETOOLONG, -errno. */
int svc_listen_path(const char *path, int *ret_fd);

struct svc_ops {
        /* In the service process, right before an event's child is started (e.g. reload the
         * configuration when it changed). A negative return drops the event: the callback has said
         * why. May be NULL. */
        int (*prepare)(void *userdata, const struct svc_event *ev);
        /* In the child: handles the event; the return value is the child's exit status. */
        int (*handle)(void *userdata, const struct svc_event *ev);
        /* In the service process: something the service could not do and went on without: a
         * message it could not use (r from svc_event_parse or the socket), a child that died by a
         * signal (r = -EINTR), a fork that failed. what says it in words. May be NULL. */
        void (*problem)(void *userdata, int r, const char *what);
};

struct svc_params {
        int fd;                /* listening socket */
        unsigned max_children; /* events handled at the same time (different devices); >= 1 */
        unsigned max_queued;   /* events accepted and waiting; beyond, new ones wait in the socket */
        int idle_exit_ms;      /* return after this long with nothing queued and no child; < 0 never */
};

struct svc_stats {
        unsigned long received; /* messages read */
        unsigned long handled;  /* children that exited (any status) */
        unsigned long failed;   /* of these, exit status not 0 or killed by a signal */
        unsigned long dropped;  /* messages not used, events dropped by prepare, forks given up */
        long child_maxrss_kb;   /* largest peak RSS of a child (getrusage's ru_maxrss) */
};

/* Runs the service until it has been idle for idle_exit_ms or was asked to stop (SIGTERM, SIGINT;
 * the signal mask is restored on return). Returns 0, or -errno when the socket failed (events
 * already accepted are still finished first). Counts go to *ret_stats when not NULL. */
int svc_run(const struct svc_params *params, const struct svc_ops *ops, void *userdata,
            struct svc_stats *ret_stats);

/* The configuration the event children inherit, read again when the file changed. */
struct svc_config {
        const char *path;
        unsigned flags;  /* cfg_load flags */
        struct cfg *cfg; /* NULL: none could be read */
        struct stat st;  /* the file when last read (zeroed when stat failed) */
        int r;           /* result of the last read: 0 or -errno */
        bool read;       /* a read was attempted */
};

/* Reads c->path when nothing was read yet or the file changed since (device, inode, size, mtime,
 * ctime: an edit, a replacement or a chmod) or stopped or started being there. Returns 1 when it
 * was read, with the new configuration in c->cfg (NULL on failure, the reason in c->r and *err),
 * 0 when nothing changed. */
int svc_config_refresh(struct svc_config *c, struct cfg_error *err);

/* Frees the configuration held. */
void svc_config_clear(struct svc_config *c);
