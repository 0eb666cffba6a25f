/* Cleanup helpers for library handles: libudev, SQLite, cJSON, libusb, libpci. */
#pragma once

#include "cleanup.h"
#include <cJSON.h>
#include <libudev.h>
#include <libusb.h>
#include <pci/pci.h>
#include <sqlite3.h>

DEFINE_CLEANUP(struct udev, udev_unref)
DEFINE_CLEANUP(struct udev_device, udev_device_unref)
DEFINE_CLEANUP(struct udev_enumerate, udev_enumerate_unref)
DEFINE_CLEANUP(sqlite3_stmt, sqlite3_finalize)
DEFINE_CLEANUP(cJSON, cJSON_Delete)
DEFINE_CLEANUP(libusb_context, libusb_exit)
DEFINE_CLEANUP(struct libusb_config_descriptor, libusb_free_config_descriptor)
DEFINE_CLEANUP(struct pci_access, pci_cleanup)
static inline void libusb_free_device_listp(libusb_device ***l) {
        if (*l)
                libusb_free_device_list(*l, 1);
}

#define _cleanup_udev_ _cleanup_(udev_unrefp)
#define _cleanup_udev_device_ _cleanup_(udev_device_unrefp)
#define _cleanup_udev_enumerate_ _cleanup_(udev_enumerate_unrefp)
#define _cleanup_stmt_ _cleanup_(sqlite3_finalizep)
#define _cleanup_cjson_ _cleanup_(cJSON_Deletep)
#define _cleanup_libusb_ _cleanup_(libusb_exitp)
#define _cleanup_libusb_device_list_ _cleanup_(libusb_free_device_listp)
#define _cleanup_libusb_config_ _cleanup_(libusb_free_config_descriptorp)
#define _cleanup_pci_access_ _cleanup_(pci_cleanupp)
