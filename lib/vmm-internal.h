/* Shared only by vmm.c (the dispatcher) and its back ends vmm-qemu.c and vmm-crosvm.c. */
#pragma once

#include "vmm.h"

struct qmp;

struct vmm_conn {
        const struct cfg_vm *vm;
        struct vmm_opts o;
        struct qmp *qmp; /* QEMU: the connection; crosvm: NULL */
};

/* A back end. Each function has the contract of its vmm_* counterpart. */
struct vmm_backend {
        int (*connect)(struct vmm_conn *c, char **ret_error);
        int (*attach)(struct vmm_conn *c, const struct dev *d, const char *id, bool root_bus,
                      struct vmm_attachment *ret, char **ret_error);
        int (*detach)(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error);
        int (*list)(struct vmm_conn *c, struct vmm_list *ret, char **ret_error);
        int (*has)(struct vmm_conn *c, const struct vmm_attachment *a, char **ret_error);
        void (*disconnect)(struct vmm_conn *c); /* frees what connect set up; may be NULL */
};

extern const struct vmm_backend vmm_qemu_backend;
extern const struct vmm_backend vmm_crosvm_backend;

/* Appends an empty device (no port, no host bus/address) to l; NULL when out of memory. */
struct vmm_device *vmm_list_append(struct vmm_list *l);

/* Bounds with their defaults applied. */
int vmm_timeout_ms(const struct vmm_conn *c);
int vmm_detach_timeout_ms(const struct vmm_conn *c);
