/* Advisory locks (flock) in the lock directory, shared by helpers, reconcile and the database.
 * Order, to avoid deadlock: a device lock first, then the VM lock.
 *
 * Waiting blocks in the kernel, so a lock released by its holder is taken at once (no polling).
 * The wait is bounded by a per-thread timer whose SIGALRM interrupts it: the first wait installs a
 * SIGALRM handler that does nothing (programs using this module must not use SIGALRM otherwise). */
#pragma once

#include <stddef.h>

#define LOCK_TIMEOUT_MS 120000 /* how long a helper waits for a device or VM lock */

/* flock(fd, op) (LOCK_SH or LOCK_EX), waiting at most timeout_ms for another holder to let go.
 * Returns 0, -ETIMEDOUT, or -errno. */
int lock_wait(int fd, int op, int timeout_ms);

/* Takes an exclusive lock on DIR/NAME.lock (DIR created 0700 if missing), waiting at most
 * timeout_ms. name is made file-safe. Returns an fd to pass to lock_release(), -ETIMEDOUT, or -errno. */
int lock_take(const char *dir, const char *name, int timeout_ms);

/* Takes the lock of one device (keyed by a hash of its devpath). */
int lock_take_device(const char *dir, const char *devpath, int timeout_ms);

/* Takes the lock of one VM. */
int lock_take_vm(const char *dir, const char *vm, int timeout_ms);

/* Releases a lock; negative fds are ignored. */
void lock_release(int fd);
