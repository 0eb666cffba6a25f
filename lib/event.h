/* The helper's event flow: one udev event, from its environment (or ACTION DEVPATH) to a decision
 * and, through the attach/detach transaction (xact.h), to the VM and the database.
 * helper/main.c only parses options and prints the result. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "device.h"
#include "xact.h"

struct udev;
struct cJSON;

struct event {
        char action[16]; /* "add", "remove", "bind", "change" */
        uint64_t seqnum; /* 0 when not from udev */
        struct dev *dev; /* owned */
};

/* Builds the event from ACTION and DEVPATH (arguments) or from the udev environment (envp, used
 * when action is NULL). On add the device is read from sysfs and completed from envp; on remove
 * (sysfs gone) from envp alone, or a minimal device of that DEVPATH. Returns -EINVAL for a
 * malformed event (message in err), -ENODEV when an add names no device. */
int event_new(struct udev *udev, const char *action, const char *devpath, char *const *envp,
              struct event *ret, char *err, size_t errlen);

/* Frees the event's device. */
void event_clear(struct event *ev);

/* Handles the event:
 *   add:    decide → (unclaimed: done, nothing locked or written) → device lock → open database →
 *           stale check → the user's choice and the host mount → attach (xact_attach), unless the
 *           database says it is attached already
 *   remove: device lock → open database → stale check → detach the open record (xact_detach)
 * Returns 0 when handled (res says how, including XACT_FAILED), or -errno for an error outside the
 * VMM (database, lock), with res->error set. */
int event_handle(const struct xact_ctx *ctx, const struct event *ev, struct xact_result *res);

/* The result as the helper's JSON object. */
int event_result_to_json(const struct event *ev, const struct xact_result *r, struct cJSON **ret);
