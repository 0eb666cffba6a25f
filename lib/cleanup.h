/* Scope-bound cleanup for the foreign types vhotplug handles. */
#pragma once

#include <stdlib.h>
#include <unistd.h>
#include <stdio.h>
#include <dirent.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) {
        free(*(void **)p);
}
static inline void closep(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)
#define _cleanup_closedir_ _cleanup_(closedirp)

/* Declares `static inline void name##p(type **p)` calling fn when *p is set. */
#define DEFINE_CLEANUP(type, fn)                                                                            \
        static inline void fn##p(type **p) {                                                                \
                if (*p)                                                                                     \
                        fn(*p);                                                                             \
        }

/* Hands ownership of *p to the caller and clears it, so no cleanup runs. */
#define TAKE_PTR(p)                                                                                         \
        ({                                                                                                  \
                __typeof__(p) _t = (p);                                                                     \
                (p) = NULL;                                                                                 \
                _t;                                                                                         \
        })
#define TAKE_FD(fd)                                                                                         \
        ({                                                                                                  \
                int _t = (fd);                                                                              \
                (fd) = -1;                                                                                  \
                _t;                                                                                         \
        })

#define ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))
