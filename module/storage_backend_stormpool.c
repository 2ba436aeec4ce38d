/*
 * storage_backend_stormpool.c: libvirt storage backend for tiered template
 *                              pools
 *
 * A stormpool pool keeps templates in its source directory (the primary
 * tier, big and slow disks) and the qcow2 overlays of the instances cloned
 * from them in its target directory (the secondary tier, SSDs). This file
 * is the top of the module: the backend table and its registration, the
 * one symbol the module exports (see stormpool.syms).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <config.h>

#include "storage_backend.h"
#include "storage_util.h"

#include "stormpool_module.h"

int virStorageBackendStormpoolRegister(void);


static virStorageBackend virStorageBackendStormpool = {
    .type = VIR_STORAGE_POOL_STORMPOOL,

    .checkPool = stormpoolCheckPool,
    .startPool = stormpoolStartPool,
    .buildPool = stormpoolBuildPool,
    .refreshPool = stormpoolRefreshPool,
    .stopPool = stormpoolStopPool,
    .deletePool = stormpoolDeletePool,

    .buildVol = stormpoolBuildVol,
    .buildVolFrom = stormpoolBuildVolFrom,
    .createVol = stormpoolCreateVol,
    .refreshVol = stormpoolRefreshVol,
    .deleteVol = stormpoolDeleteVol,
    .resizeVol = stormpoolResizeVol,
    .uploadVol = stormpoolUploadVol,
    .downloadVol = virStorageBackendVolDownloadLocal,
    .wipeVol = stormpoolWipeVol,
};


int
virStorageBackendStormpoolRegister(void)
{
    stormpoolLogInit();
    if (virStorageBackendRegister(&virStorageBackendStormpool) < 0)
        return -1;

    return virStorageBackendNamespaceInit(VIR_STORAGE_POOL_STORMPOOL,
                                          &stormpoolXMLNamespace);
}
