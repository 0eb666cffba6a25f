/* Libraries opened at first use. libkmod (driverPath rules) and libsystemd (journal records) pull
 * in libcrypto, libgcrypt and three compressors: linked at start-up they doubled the peak RSS of
 * every helper process, also of the many that never look up a module or write a journal record.
 * libusb and libpci (with libz) are fallbacks few events need, yet loading them cost every
 * process ~0.2 ms. A process that needs one opens it once (dlopen) and keeps it. */
#pragma once

#include <stddef.h>

/* The names dlopen() is given (the build may give full paths, e.g. Nix store paths). */
#ifndef VHP_LIBKMOD_SONAME
#define VHP_LIBKMOD_SONAME "libkmod.so.2"
#endif
#ifndef VHP_LIBSYSTEMD_SONAME
#define VHP_LIBSYSTEMD_SONAME "libsystemd.so.0"
#endif
#ifndef VHP_LIBUSB_SONAME
#define VHP_LIBUSB_SONAME "libusb-1.0.so.0"
#endif
#ifndef VHP_LIBPCI_SONAME
#define VHP_LIBPCI_SONAME "libpci.so.3"
#endif

/* One function of a library: its name and where to store its address. */
struct dl_sym {
        const char *name;
        void **fn;
};

/* Opens soname (once per process; later calls return the first result) and resolves every symbol
 * of syms. 0, or -ENOPKG when the library or a symbol is missing (nothing is stored then). Safe
 * from several threads; state is the caller's, one per library, zero-initialized. */
struct dl_lib {
        const char *soname;
        const struct dl_sym *syms;
        size_t n_syms;
        int state; /* 0 not tried, 1 loaded, < 0 -errno */
};
int dl_load(struct dl_lib *lib);
