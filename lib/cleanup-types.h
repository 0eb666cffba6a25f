/* Cleanup helpers for library handles: libudev, SQLite, cJSON. */
#pragma once

#include "cleanup.h"
#include <cJSON.h>
#include <libudev.h>
#include <sqlite3.h>

DEFINE_CLEANUP(struct udev, udev_unref)
DEFINE_CLEANUP(struct udev_device, udev_device_unref)
DEFINE_CLEANUP(struct udev_enumerate, udev_enumerate_unref)
DEFINE_CLEANUP(sqlite3_stmt, sqlite3_finalize)
DEFINE_CLEANUP(cJSON, cJSON_Delete)

#define _cleanup_udev_ _cleanup_(udev_unrefp)
#define _cleanup_udev_device_ _cleanup_(udev_device_unrefp)
#define _cleanup_udev_enumerate_ _cleanup_(udev_enumerate_unrefp)
#define _cleanup_stmt_ _cleanup_(sqlite3_finalizep)
#define _cleanup_cjson_ _cleanup_(cJSON_Deletep)
