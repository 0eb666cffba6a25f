/* Notifications for one vhotplug-api connection that asked for them (enable_notifications), with no
 * daemon behind them: what happened is learnt from where the truth lives, only while someone
 * listens.
 *   usb_connected / usb_disconnected      a libudev monitor (claimed USB devices only)
 *   usb_attached / usb_detached / usb_select_vm / pci_attached / pci_detached
 *                                         new rows of the database's history, read when inotify
 *                                         says the database files changed (no polling)
 * A helper writes its history as always; it pays nothing for a listener. */
#pragma once

#include <stdbool.h>

struct cJSON;
struct cfg;
struct udev;
struct notify;

/* Receives one event (ownership passes to it). Returns < 0 to stop (the connection failed). */
typedef int (*notify_emit_fn)(void *userdata, struct cJSON *event);

/* Starts listening: a udev monitor, an inotify watch on the database's directory, and the newest
 * history row as the starting point. db_path: the state database (cfg's unless given). udev is the
 * caller's. Returns 0, or -errno with *ret_error. */
int notify_new(const struct cfg *cfg, const char *db_path, bool no_strict_perms, struct udev *udev,
               struct notify **ret, char **ret_error);

/* Frees; NULL-safe. */
void notify_free(struct notify *n);

/* The descriptors to poll for input (2). */
void notify_fds(const struct notify *n, int ret_fds[2]);

/* Sends usb_select_vm for every present device that waits for a choice (a client enabling
 * notifications learns of prompts made before it listened). */
int notify_announce_prompts(struct notify *n, notify_emit_fn emit, void *userdata);

/* Handles what became readable: udev events and new history rows, emitted in order. Returns 0, or
 * the emitter's error. */
int notify_process(struct notify *n, notify_emit_fn emit, void *userdata);
