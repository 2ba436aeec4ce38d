/*
 * stormpool_volumes.c: the volume callbacks of the stormpool backend
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <config.h>

#include "storage_conf.h"
#include "storage_source_conf.h"
#include "storage_util.h"
#include "virerror.h"
#include "virfile.h"

#include "stormpool_module.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE


/* ---- volume creation -------------------------------------------------- */

static SpImageFormat
stormpoolRequestFormat(int format)
{
    if (format == VIR_STORAGE_FILE_QCOW2)
        return SP_IMAGE_FORMAT_QCOW2;
    if (format == VIR_STORAGE_FILE_RAW)
        return SP_IMAGE_FORMAT_RAW;
    return SP_IMAGE_FORMAT_OTHER;
}


static void
stormpoolVolumeRequest(virStoragePoolObj *obj,
                       virStorageVolDef *vol,
                       SpVolumeRequest *request)
{
    virStorageSource *backing = vol->target.backingStore;

    request->pool_name = virStoragePoolObjGetDef(obj)->name;
    request->name = vol->name;
    request->format = stormpoolRequestFormat(vol->target.format);
    request->format_name = virStorageFileFormatTypeToString(vol->target.format);
    request->capacity = vol->target.capacity;
    request->encrypted = vol->target.encryption != NULL;
    request->backing = backing != NULL;
    request->backing_spec = backing ? backing->path : NULL;
    request->backing_raw = backing && backing->format == VIR_STORAGE_FILE_RAW;
}


static void
stormpoolVolApplyPlan(virStorageVolDef *vol,
                      const SpVolumePlan *plan)
{
    virStorageSource *backing = vol->target.backingStore;

    vol->type = VIR_STORAGE_VOL_FILE;
    vol->target.capacity = plan->capacity;
    g_free(vol->target.path);
    vol->target.path = g_strdup(plan->path);
    g_free(vol->key);
    vol->key = g_strdup(plan->path);
    if (!backing)
        return;
    g_free(backing->path);
    backing->path = g_strdup(plan->backing_path);
    backing->format = plan->backing_format == SP_IMAGE_FORMAT_QCOW2
        ? VIR_STORAGE_FILE_QCOW2 : VIR_STORAGE_FILE_RAW;
}


int
stormpoolCreateVol(virStoragePoolObj *obj,
                   virStorageVolDef *vol)
{
    g_autoptr(SpVolumePlan) plan = NULL;
    g_autoptr(GError) err = NULL;
    SpVolumeRequest request;

    stormpoolVolumeRequest(obj, vol, &request);
    if (!(plan = spPoolPlanVolume(stormpoolPoolOf(obj), &request, &err)))
        return stormpoolReportError(err);
    stormpoolVolApplyPlan(vol, plan);
    return 0;
}


int
stormpoolBuildVol(virStoragePoolObj *obj,
                  virStorageVolDef *vol,
                  unsigned int flags)
{
    g_autoptr(GError) err = NULL;
    /* The voldef is a shallow copy shared with the pool's list. */
    g_autofree char *backing = NULL;
    SpNewVolume spec;

    virCheckFlags(VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA |
                  VIR_STORAGE_VOL_CREATE_VALIDATE, -1);

    stormpoolNewVolume(vol, flags, &spec);
    spec.backing_path = backing = g_strdup(spec.backing_path);
    if (!spPoolCreateVolume(stormpoolPoolOf(obj), &spec, &err))
        return stormpoolReportError(err);
    return 0;
}


int
stormpoolBuildVolFrom(virStoragePoolObj *obj,
                      virStorageVolDef *vol,
                      virStorageVolDef *inputvol,
                      unsigned int flags)
{
    virStorageSource *inbacking = inputvol->target.backingStore;
    g_autoptr(GError) err = NULL;
    g_autofree char *backing = NULL;
    SpNewVolume spec;
    SpSourceVolume src = {
        .name = inputvol->name,
        .path = inputvol->target.path,
        .format = stormpoolImageFormat(inputvol->target.format),
        .capacity = inputvol->target.capacity,
        .backing_path = inbacking ? inbacking->path : NULL,
    };

    virCheckFlags(VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA |
                  VIR_STORAGE_VOL_CREATE_VALIDATE, -1);

    stormpoolNewVolume(vol, flags, &spec);
    spec.backing_path = backing = g_strdup(spec.backing_path);
    if (!spPoolCreateVolumeFrom(stormpoolPoolOf(obj), &spec, &src, &err))
        return stormpoolReportError(err);
    return 0;
}


/* ---- volume lifecycle ------------------------------------------------- */

int
stormpoolRefreshVol(virStoragePoolObj *obj,
                    virStorageVolDef *vol)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SpVolume) volume = NULL;

    if (!(volume = spPoolRefreshVolume(stormpoolPoolOf(obj), vol->target.path, &err)))
        return stormpoolReportError(err);
    return stormpoolVolUpdate(vol, volume);
}


int
stormpoolDeleteVol(virStoragePoolObj *obj,
                   virStorageVolDef *vol,
                   unsigned int flags)
{
    virStorageSource *backing = vol->target.backingStore;
    g_autoptr(GError) err = NULL;

    virCheckFlags(0, -1);

    if (!spPoolDeleteVolume(stormpoolPoolOf(obj), vol->name, vol->target.path,
                            backing ? backing->path : NULL, &err))
        return stormpoolReportError(err);
    return 0;
}


int
stormpoolWipeVol(virStoragePoolObj *obj,
                 virStorageVolDef *vol,
                 unsigned int algorithm,
                 unsigned int flags)
{
    g_autoptr(GError) err = NULL;
    gboolean wipe_here;

    /* libvirt defines no flags for wiping, and its own wipe takes none. */
    virCheckFlags(0, -1);

    if (!spPoolWipeVolume(stormpoolPoolOf(obj), vol->name, vol->target.path,
                          algorithm == VIR_STORAGE_VOL_WIPE_ALG_ZERO, &wipe_here, &err))
        return stormpoolReportError(err);
    /* A template is wiped as libvirt wipes any file. */
    if (wipe_here)
        return virStorageBackendVolWipeLocal(obj, vol, algorithm, flags);
    return 0;
}


int
stormpoolResizeVol(virStoragePoolObj *obj,
                   virStorageVolDef *vol,
                   unsigned long long capacity,
                   unsigned int flags)
{
    g_autoptr(GError) err = NULL;

    virCheckFlags(VIR_STORAGE_VOL_RESIZE_DELTA |
                  VIR_STORAGE_VOL_RESIZE_SHRINK, -1);

    if (!spPoolResizeVolume(stormpoolPoolOf(obj), vol->name, vol->target.path,
                            stormpoolImageFormat(vol->target.format),
                            vol->target.capacity, capacity, &err))
        return stormpoolReportError(err);
    return 0;
}


int
stormpoolUploadVol(virStoragePoolObj *obj,
                   virStorageVolDef *vol,
                   virStreamPtr stream,
                   unsigned long long offset,
                   unsigned long long len,
                   unsigned int flags)
{
    SpPool *pool = stormpoolPoolOf(obj);
    g_autoptr(GError) err = NULL;
    g_autofree char *target = NULL;
    char *path = vol->target.path;
    int rc;

    if (!spPoolUploadBegin(pool, vol->name, path, offset, &target, &err))
        return stormpoolReportError(err);
    /* The core may send the stream to a new version's file: libvirt's
     * upload opens the path of the definition it is given, at once. */
    vol->target.path = target;
    rc = virStorageBackendVolUploadLocal(obj, vol, stream, offset, len, flags);
    vol->target.path = path;
    spPoolUploadOpened(pool, target, rc == 0);
    return rc;
}
