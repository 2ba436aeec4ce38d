/*
 * stormpool_pool.c: the pool callbacks of the stormpool backend
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <config.h>

#include "storage_conf.h"
#include "storage_util.h"
#include "virerror.h"
#include "virfile.h"
#include "virlog.h"

#include "stormpool_module.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

/* make bench-create raises this category to info for the refresh split. */
VIR_LOG_INIT("storage.storage_backend_stormpool.refresh");


int
stormpoolCheckPool(virStoragePoolObj *obj,
                   bool *isActive)
{
    *isActive = spPoolTiersExist(stormpoolPoolOf(obj));
    return 0;
}


int
stormpoolStartPool(virStoragePoolObj *obj)
{
    g_autoptr(GError) err = NULL;

    if (!spPoolStart(stormpoolPoolOf(obj), &err))
        return stormpoolReportError(err);
    return 0;
}


static int
stormpoolBuildTier(const char *path,
                   const virStoragePerms *perms)
{
    mode_t mode = perms->mode == (mode_t)-1 ? VIR_STORAGE_DEFAULT_POOL_PERM_MODE
                                            : perms->mode;
    g_autofree char *parent = g_path_get_dirname(path);

    if (g_mkdir_with_parents(parent, 0755) < 0) {
        virReportSystemError(errno, _("cannot create directory '%s'"), parent);
        return -1;
    }
    return virDirCreate(path, mode, perms->uid, perms->gid, VIR_DIR_CREATE_ALLOW_EXIST);
}


int
stormpoolBuildPool(virStoragePoolObj *obj,
                   unsigned int flags)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GError) err = NULL;

    virCheckFlags(VIR_STORAGE_POOL_BUILD_OVERWRITE |
                  VIR_STORAGE_POOL_BUILD_NO_OVERWRITE, -1);

    VIR_EXCLUSIVE_FLAGS_RET(VIR_STORAGE_POOL_BUILD_OVERWRITE,
                            VIR_STORAGE_POOL_BUILD_NO_OVERWRITE, -1);

    if (!spPoolCheckLayout(stormpoolPoolOf(obj), &err))
        return stormpoolReportError(err);

    if (stormpoolBuildTier(def->source.dir, &def->target.perms) < 0 ||
        stormpoolBuildTier(def->target.path, &def->target.perms) < 0)
        return -1;

    VIR_INFO("built stormpool pool '%s': primary tier '%s', secondary tier '%s'",
             def->name, def->source.dir, def->target.path);
    return 0;
}


/* Returns the microseconds spent in libvirt's virStoragePoolObjAddVol. */
static gint64
stormpoolAddVol(virStoragePoolObj *obj,
                const SpVolume *volume)
{
    g_autoptr(virStorageVolDef) vol = g_new0(virStorageVolDef, 1);
    gint64 start;
    int rc = -1;

    vol->name = g_strdup(volume->name);
    vol->target.path = g_strdup(volume->path);
    vol->key = g_strdup(volume->path);
    start = g_get_monotonic_time();
    if (stormpoolVolUpdate(vol, volume) == 0) {
        start = g_get_monotonic_time();
        rc = virStoragePoolObjAddVol(obj, vol);
    }
    if (rc < 0) {
        VIR_WARN("cannot add volume '%s': %s", volume->name, virGetLastErrorMessage());
        virResetLastError();
    } else {
        vol = NULL;
    }
    return g_get_monotonic_time() - start;
}


int
stormpoolRefreshPool(virStoragePoolObj *obj)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    g_autoptr(GPtrArray) volumes = NULL;
    g_autoptr(GError) err = NULL;
    gint64 start = g_get_monotonic_time();
    gint64 add_vol_us = 0;
    SpTierUsage usage;
    guint i;

    if (!(volumes = spPoolRefresh(stormpoolPoolOf(obj), &usage, &err)))
        return stormpoolReportError(err);

    for (i = 0; i < volumes->len; i++)
        add_vol_us += stormpoolAddVol(obj, g_ptr_array_index(volumes, i));

    /* Instances grow in the secondary tier, so that is what pool-info shows. */
    def->capacity = usage.capacity;
    def->allocation = usage.allocation;
    def->available = usage.available;
    /* The split tells how much of a refresh is libvirt's own bookkeeping
     * of the volume list (make bench-create reads it). */
    VIR_INFO("refreshed stormpool pool '%s': %zu volumes in %.3f ms, of which %.3f ms "
             "in virStoragePoolObjAddVol", def->name, virStoragePoolObjGetVolumesCount(obj),
             (g_get_monotonic_time() - start) / 1000.0,
             add_vol_us / 1000.0);
    return 0;
}


int
stormpoolStopPool(virStoragePoolObj *obj)
{
    spPoolStop(stormpoolPoolOf(obj));
    return 0;
}


int
stormpoolDeletePool(virStoragePoolObj *obj,
                    unsigned int flags)
{
    g_autoptr(GError) err = NULL;

    virCheckFlags(0, -1);

    if (!spPoolDeleteTiers(stormpoolPoolOf(obj), &err))
        return stormpoolReportError(err);
    return 0;
}
