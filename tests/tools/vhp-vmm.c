/* vhp-vmm: drives lib/vmm.h from the command line, for integration tests.
 *
 *   vhp-vmm [OPTIONS] attach qemu|crosvm SOCKET usb BUS DEV [DEVNODE]
 *   vhp-vmm [OPTIONS] attach qemu SOCKET pci ADDRESS
 *   vhp-vmm [OPTIONS] attach qemu SOCKET evdev DEVNODE
 *   vhp-vmm [OPTIONS] detach qemu SOCKET ID
 *   vhp-vmm [OPTIONS] detach crosvm SOCKET PORT
 *   vhp-vmm [OPTIONS] list qemu|crosvm SOCKET
 * OPTIONS: --timeout MS, --detach-timeout MS, --retries N, --crosvm BIN, --root-bus
 *
 * Prints "id=ID port=PORT bus=BUS" after an attach, one "key=value ..." line per device for list,
 * and "error ENAME: message" (exit 1) on failure. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm.h"

static int fail(int r, char *msg) {
        printf("error %s: %s\n", strerrorname_np(-r) ? strerrorname_np(-r) : "?", msg ? msg : strerror(-r));
        free(msg);
        return 1;
}

static int usage(void) {
        fprintf(stderr, "usage: vhp-vmm [OPTIONS] attach|detach|list qemu|crosvm SOCKET ...\n");
        return 2;
}

static int parse_dev(int argc, char **argv, struct dev *d) {
        if (argc >= 3 && strcmp(argv[0], "usb") == 0) {
                d->kind = DEV_USB;
                d->busnum = atoi(argv[1]);
                d->devnum = atoi(argv[2]);
                d->devnode = argc >= 4 ? argv[3] : NULL;
                return 0;
        }
        if (argc == 2 && strcmp(argv[0], "pci") == 0) {
                d->kind = DEV_PCI;
                d->pci_address = argv[1];
                return 0;
        }
        if (argc == 2 && strcmp(argv[0], "evdev") == 0) {
                d->kind = DEV_EVDEV;
                d->devnode = argv[1];
                d->sysname = strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1 : argv[1];
                return 0;
        }
        return -EINVAL;
}

static void print_device(const struct vmm_device *v) {
        printf("id=%s driver=%s kind=%s ours=%d hostbus=%d hostaddr=%d host=%s evdev=%s port=%d vid=%04x "
               "pid=%04x\n",
               v->id, v->driver, dev_kind_name(v->kind) ? dev_kind_name(v->kind) : "unknown", v->ours,
               v->hostbus, v->hostaddr, v->host, v->evdev, v->port, v->vendor_id, v->product_id);
}

int main(int argc, char **argv) {
        static const struct option opts[] = {
                {"timeout", required_argument, NULL, 't'}, {"detach-timeout", required_argument, NULL, 'd'},
                {"retries", required_argument, NULL, 'r'}, {"crosvm", required_argument, NULL, 'c'},
                {"root-bus", no_argument, NULL, 'b'},      {},
        };
        struct vmm_opts o = {.timeout_ms = 10000, .crosvm_bin = "crosvm", .detach_timeout_ms = 5000};
        int retries = 5;
        bool root_bus = false;
        int c;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                switch (c) {
                case 't':
                        o.timeout_ms = atoi(optarg);
                        break;
                case 'd':
                        o.detach_timeout_ms = atoi(optarg);
                        break;
                case 'r':
                        retries = atoi(optarg);
                        break;
                case 'c':
                        o.crosvm_bin = optarg;
                        break;
                case 'b':
                        root_bus = true;
                        break;
                default:
                        return usage();
                }
        }
        argc -= optind;
        argv += optind;
        if (argc < 3)
                return usage();

        struct cfg_vm vm = {.name = (char *)"vm",
                            .socket = argv[2],
                            .type = strcmp(argv[1], "crosvm") == 0 ? VMM_CROSVM : VMM_QEMU};
        struct vmm_conn *conn = NULL;
        char *err = NULL;
        int r;

        if (strcmp(argv[0], "attach") == 0) {
                struct dev d = {0};
                struct vmm_attachment a;
                char id[VMM_ID_MAX] = "";
                if (parse_dev(argc - 3, argv + 3, &d) < 0)
                        return usage();
                (void)vmm_device_id(&d, id, sizeof(id));
                /* Like the helper: a fresh connection per attempt while QEMU cannot see the device. */
                for (int attempt = 0;; attempt++) {
                        r = vmm_connect(&vm, &o, &conn, &err);
                        if (r >= 0)
                                r = vmm_attach(conn, &d, id, root_bus, &a, &err);
                        vmm_disconnect(conn);
                        if (r != -EAGAIN || attempt >= retries)
                                break;
                        free(err);
                        err = NULL;
                        usleep(50000);
                }
                if (r < 0)
                        return fail(r, err);
                printf("id=%s port=%d bus=%s\n", a.id, a.port, a.bus);
        } else if (strcmp(argv[0], "detach") == 0 && argc == 4) {
                struct vmm_attachment a = {.port = -1};
                if (vm.type == VMM_CROSVM)
                        a.port = atoi(argv[3]);
                else
                        snprintf(a.id, sizeof(a.id), "%s", argv[3]);
                r = vmm_connect(&vm, &o, &conn, &err);
                if (r >= 0)
                        r = vmm_detach(conn, &a, &err);
                vmm_disconnect(conn);
                /* Like the helper: confirm on fresh connections until the VM lets go. */
                for (int waited = 0; r == 1; waited += 20) {
                        if (waited >= o.detach_timeout_ms) {
                                free(err);
                                err = strdup("accepted device_del but has not released it in time");
                                r = -EINPROGRESS;
                                break;
                        }
                        usleep(20000);
                        free(err);
                        err = NULL;
                        r = vmm_connect(&vm, &o, &conn, &err);
                        if (r >= 0)
                                r = vmm_has(conn, &a, &err);
                        vmm_disconnect(conn);
                }
                if (r < 0)
                        return fail(r, err);
                printf("detached\n");
        } else if (strcmp(argv[0], "list") == 0) {
                struct vmm_list l = {0};
                r = vmm_connect(&vm, &o, &conn, &err);
                if (r >= 0)
                        r = vmm_list(conn, &l, &err);
                vmm_disconnect(conn);
                if (r < 0)
                        return fail(r, err);
                for (size_t i = 0; i < l.n; i++)
                        print_device(&l.items[i]);
                vmm_list_clear(&l);
        } else
                return usage();
        free(err);
        return 0;
}
