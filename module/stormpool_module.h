/*
 * stormpool_module.h: what the files of the stormpool backend module share
 *
 * The module is libvirt's side of a stormpool pool: each storage driver
 * callback parses libvirt's structures, calls the core (stormpool/pool.h)
 * and turns the outcome back into libvirt's structures and errors. Calls
 * go down only: storage_backend_stormpool.c (the backend table) calls
 * stormpool_pool.c and stormpool_volumes.c, which call
 * stormpool_translate.c.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "internal.h"
#include "storage_backend.h"
#include "virstorageobj.h"
#include "virxml.h"

#include "stormpool/pool.h"

/* stormpool_translate.c: from the core to libvirt and back */

/* The SpPool of a pool: its namespace data, made when its XML was parsed. */
SpPool *stormpoolPoolOf(virStoragePoolObj *obj);

/* Report @err as a libvirt error of the kind of what failed; returns -1. */
int stormpoolReportError(const GError *err);

/* Fill @vol from what the core read of its file. */
int stormpoolVolUpdate(virStorageVolDef *vol, const SpVolume *volume);

/* The core's view of a libvirt volume definition. */
SpImageFormat stormpoolImageFormat(int format);
void stormpoolNewVolume(virStorageVolDef *vol, unsigned int flags, SpNewVolume *out);

/* Hand the core's log messages on to libvirt's log. */
void stormpoolLogInit(void);

extern virXMLNamespace stormpoolXMLNamespace;

/* stormpool_pool.c: the pool callbacks */

int stormpoolCheckPool(virStoragePoolObj *obj, bool *isActive);
int stormpoolStartPool(virStoragePoolObj *obj);
int stormpoolBuildPool(virStoragePoolObj *obj, unsigned int flags);
int stormpoolRefreshPool(virStoragePoolObj *obj);
int stormpoolStopPool(virStoragePoolObj *obj);
int stormpoolDeletePool(virStoragePoolObj *obj, unsigned int flags);

/* stormpool_volumes.c: the volume callbacks */

int stormpoolCreateVol(virStoragePoolObj *obj, virStorageVolDef *vol);
int stormpoolBuildVol(virStoragePoolObj *obj, virStorageVolDef *vol,
                      unsigned int flags);
int stormpoolBuildVolFrom(virStoragePoolObj *obj, virStorageVolDef *vol,
                          virStorageVolDef *inputvol, unsigned int flags);
int stormpoolRefreshVol(virStoragePoolObj *obj, virStorageVolDef *vol);
int stormpoolDeleteVol(virStoragePoolObj *obj, virStorageVolDef *vol,
                       unsigned int flags);
int stormpoolWipeVol(virStoragePoolObj *obj, virStorageVolDef *vol,
                     unsigned int algorithm, unsigned int flags);
int stormpoolResizeVol(virStoragePoolObj *obj, virStorageVolDef *vol,
                       unsigned long long capacity, unsigned int flags);
int stormpoolUploadVol(virStoragePoolObj *obj, virStorageVolDef *vol,
                       virStreamPtr stream, unsigned long long offset,
                       unsigned long long len, unsigned int flags);
