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

#include "image/qcow2_overlay.h"
#include "fs/volume_name.h"
#include "stormpool_module.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE


/* ---- volume creation -------------------------------------------------- */

static virStorageVolDef *
stormpoolFindBacking(virStoragePoolObj *obj,
                     const char *spec)
{
    g_autofree char *clean = NULL;
    virStorageVolDef *vol;

    if (!strchr(spec, '/'))
        return virStorageVolDefFindByName(obj, spec);

    clean = virFileSanitizePath(spec);
    if ((vol = virStorageVolDefFindByPath(obj, clean)))
        return vol;
    return virStorageVolDefFindByKey(obj, clean);
}


static virStorageVolDef *
stormpoolLookupTemplate(virStoragePoolObj *obj,
                        const char *spec)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(obj);
    virStorageVolDef *template = stormpoolFindBacking(obj, spec);
    g_autoptr(GError) err = NULL;

    if (!template) {
        virReportError(VIR_ERR_NO_STORAGE_VOL,
                       _("backing volume '%s' is not a template of pool '%s' "
                         "(templates are the volumes in '%s')"),
                       spec, def->name, def->source.dir);
        return NULL;
    }
    if (spPoolIsInstance(stormpoolPoolOf(obj), template->target.path)) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("backing volume '%s' is an instance; an instance must "
                         "back onto a template in the primary tier '%s'"),
                       template->name, def->source.dir);
        return NULL;
    }
    if (template->building) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("template '%s' is still being created"), template->name);
        return NULL;
    }
    if (!spPoolCheckNotUploading(stormpoolPoolOf(obj), template->name,
                                 template->target.path, &err)) {
        stormpoolReportError(err);
        return NULL;
    }
    return template;
}


/* The instance's backing store, given as a template (or, by vol-clone, as
 * the replica of one), becomes what the pool's policy backs it onto. */
static int
stormpoolPrepareBacking(virStoragePoolObj *obj,
                        virStorageVolDef *vol,
                        virStorageSource *backing)
{
    SpPool *pool = stormpoolPoolOf(obj);
    g_autofree char *replica_of = spPoolReplicaTemplateName(pool, backing->path);
    g_autoptr(GError) err = NULL;
    virStorageVolDef *template;

    if (!(template = stormpoolLookupTemplate(obj, replica_of ? replica_of : backing->path)))
        return -1;
    /* The volume XML parser turns an omitted backing format into qcow2, so
     * only an explicit raw for a qcow2 template is a real contradiction. */
    if (backing->format == VIR_STORAGE_FILE_RAW &&
        template->target.format != VIR_STORAGE_FILE_RAW) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("backing format 'raw' does not match template '%s', which is %s"),
                       template->name,
                       virStorageFileFormatTypeToString(template->target.format));
        return -1;
    }
    backing->format = template->target.format;
    g_free(backing->path);
    if (!(backing->path = spPoolInstanceBacking(pool, template->target.path, &err)))
        return stormpoolReportError(err);
    /* A replica of a template that has a backing file is flattened. */
    if (template->target.backingStore && STRNEQ(backing->path, template->target.path))
        backing->format = VIR_STORAGE_FILE_QCOW2;

    if (vol->target.capacity == 0)
        vol->target.capacity = template->target.capacity;
    if (vol->target.capacity < template->target.capacity) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("capacity %llu of instance '%s' is smaller than its template '%s' (%llu bytes)"),
                       vol->target.capacity, vol->name, template->name,
                       template->target.capacity);
        return -1;
    }
    return 0;
}


static int
stormpoolPrepareInstance(virStoragePoolObj *obj,
                         virStorageVolDef *vol)
{
    if (vol->target.format != VIR_STORAGE_FILE_QCOW2) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED,
                       _("instance '%s' must be a qcow2 overlay, not %s"),
                       vol->name, virStorageFileFormatTypeToString(vol->target.format));
        return -1;
    }
    if (!vol->target.backingStore->path) {
        virReportError(VIR_ERR_XML_ERROR, "%s",
                       _("<backingStore> of an instance needs a <path>"));
        return -1;
    }
    return stormpoolPrepareBacking(obj, vol, vol->target.backingStore);
}


static int
stormpoolCheckVolDef(virStorageVolDef *vol)
{
    g_autoptr(GError) err = NULL;

    if (!spVolumeNameValidate(vol->name, &err))
        return stormpoolReportError(err);
    if (vol->target.format != VIR_STORAGE_FILE_QCOW2 &&
        vol->target.format != VIR_STORAGE_FILE_RAW) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED,
                       _("unsupported volume format '%s': stormpool volumes are qcow2 or raw"),
                       virStorageFileFormatTypeToString(vol->target.format));
        return -1;
    }
    if (vol->target.encryption) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED, "%s",
                       _("stormpool does not support encrypted volumes"));
        return -1;
    }
    return 0;
}


static int
stormpoolCheckCapacity(virStorageVolDef *vol)
{
    guint64 limit = vol->target.format == VIR_STORAGE_FILE_QCOW2
        ? spQcow2MaxVirtualSize(SP_QCOW2_DEFAULT_CLUSTER_BITS) : (guint64) G_MAXINT64;

    if (vol->target.capacity > limit) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("capacity %llu of volume '%s' is larger than the %s limit of %llu bytes"),
                       vol->target.capacity, vol->name,
                       virStorageFileFormatTypeToString(vol->target.format),
                       (unsigned long long) limit);
        return -1;
    }
    return 0;
}


int
stormpoolCreateVol(virStoragePoolObj *obj,
                   virStorageVolDef *vol)
{
    SpPool *pool = stormpoolPoolOf(obj);
    bool instance = vol->target.backingStore != NULL;
    g_autoptr(GError) err = NULL;

    if (stormpoolCheckVolDef(vol) < 0)
        return -1;
    if (!spPoolCheckNameFree(pool, vol->name, &err))
        return stormpoolReportError(err);

    vol->type = VIR_STORAGE_VOL_FILE;
    if (instance && stormpoolPrepareInstance(obj, vol) < 0)
        return -1;
    if (!instance && vol->target.capacity == 0) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("template '%s' needs a capacity"), vol->name);
        return -1;
    }
    if (stormpoolCheckCapacity(vol) < 0)
        return -1;

    g_free(vol->target.path);
    vol->target.path = spPoolVolumePath(pool, vol->name, instance);
    g_free(vol->key);
    vol->key = g_strdup(vol->target.path);
    return 0;
}


/* New volumes are written empty in milliseconds, or copied from their
 * source: there is no metadata to preallocate. The error is that of a
 * flag the backend does not take, which clients such as virt-install
 * answer by trying again without it. */
static int
stormpoolRefusePrealloc(unsigned int flags)
{
    if (!(flags & VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA))
        return 0;
    virReportError(VIR_ERR_INVALID_ARG, "%s",
                   _("stormpool volumes cannot have preallocated metadata: an instance "
                     "is a thin qcow2 overlay of its template, and a template gets its "
                     "data from vol-upload or vol-create-from"));
    return -1;
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
    if (stormpoolRefusePrealloc(flags) < 0)
        return -1;

    stormpoolNewVolume(vol, &spec);
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
    if (stormpoolRefusePrealloc(flags) < 0)
        return -1;

    stormpoolNewVolume(vol, &spec);
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
    SpTier tier = spPoolIsInstance(stormpoolPoolOf(obj), vol->target.path)
        ? SP_TIER_SECONDARY : SP_TIER_PRIMARY;

    if (!(volume = spVolumeRead(vol->target.path, tier, &err)))
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
    SpPool *pool = stormpoolPoolOf(obj);
    g_autoptr(GError) err = NULL;

    if (!spPoolIsInstance(pool, vol->target.path)) {
        if (!spPoolPrepareTemplateWipe(pool, vol->name, vol->target.path, &err))
            return stormpoolReportError(err);
        return virStorageBackendVolWipeLocal(obj, vol, algorithm, flags);
    }

    virCheckFlags(0, -1);
    if (algorithm != VIR_STORAGE_VOL_WIPE_ALG_ZERO) {
        virReportError(VIR_ERR_ARGUMENT_UNSUPPORTED, "%s",
                       _("wiping an instance resets it to its template; "
                         "only the default 'zero' algorithm is supported"));
        return -1;
    }
    if (!spPoolResetInstance(pool, vol->name, vol->target.path, &err))
        return stormpoolReportError(err);
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

    if (capacity < vol->target.capacity) {
        virReportError(VIR_ERR_OPERATION_UNSUPPORTED, "%s",
                       _("stormpool volumes can only grow: shrinking would discard guest data"));
        return -1;
    }
    if (!spPoolResizeVolume(stormpoolPoolOf(obj), vol->name, vol->target.path,
                            stormpoolImageFormat(vol->target.format), capacity, &err))
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
    int rc;

    if (!spPoolUploadBegin(pool, vol->name, vol->target.path, &err))
        return stormpoolReportError(err);
    rc = virStorageBackendVolUploadLocal(obj, vol, stream, offset, len, flags);
    spPoolUploadOpened(pool, vol->target.path, rc == 0);
    return rc;
}
