/* Advisory locks (flock) in the lock directory, shared by helpers and reconcile.
 * Order, to avoid deadlock: a device lock first, then the VM lock. */
#pragma once

#include <stddef.h>

#define LOCK_TIMEOUT_MS 120000   /* how long a helper waits for a device or VM lock */

/* Takes an exclusive lock on DIR/NAME.lock (DIR created 0700 if missing), waiting at most
 * timeout_ms. name is made file-safe. Returns an fd to pass to lock_release(), -ETIMEDOUT, or -errno. */
int lock_take(const char *dir, const char *name, int timeout_ms);

/* Takes the lock of one device (keyed by a hash of its devpath). */
int lock_take_device(const char *dir, const char *devpath, int timeout_ms);

/* Takes the lock of one VM. */
int lock_take_vm(const char *dir, const char *vm, int timeout_ms);

/* Releases a lock; negative fds are ignored. */
void lock_release(int fd);
