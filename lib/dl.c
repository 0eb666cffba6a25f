#include "dl.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

static pthread_mutex_t dl_mutex = PTHREAD_MUTEX_INITIALIZER;

static int load_locked(struct dl_lib *lib) {
        void *h, *addr[64];

        if (lib->n_syms > sizeof(addr) / sizeof(addr[0]))
                return -E2BIG;
        h = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
        if (!h)
                return -ENOPKG;
        /* All or nothing: a library too old for one symbol is not used at all. */
        for (size_t i = 0; i < lib->n_syms; i++) {
                addr[i] = dlsym(h, lib->syms[i].name);
                if (!addr[i]) {
                        dlclose(h);
                        return -ENOPKG;
                }
        }
        for (size_t i = 0; i < lib->n_syms; i++)
                *lib->syms[i].fn = addr[i];
        return 1;
}

int dl_load(struct dl_lib *lib) {
        int state;

        pthread_mutex_lock(&dl_mutex);
        if (lib->state == 0)
                lib->state = load_locked(lib);
        state = lib->state;
        pthread_mutex_unlock(&dl_mutex);
        return state < 0 ? state : 0;
}
