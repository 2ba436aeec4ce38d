/*
 * stormpool_translate.c: from the stormpool core to libvirt and back
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <config.h>

#include "storage_conf.h"
#include "storage_source_conf.h"
#include "storage_util.h"
#include "virerror.h"
#include "virlog.h"

#include "stormpool/error.h"
#include "stormpool_module.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

VIR_LOG_INIT("storage.storage_backend_stormpool");


SpPool *
stormpoolPoolOf(virStoragePoolObj *obj)
{
    return virStoragePoolObjGetDef(obj)->namespaceData;
}


static virErrorNumber
stormpoolErrorNumber(SpErrorCode code)
{
    switch (code) {
    case SP_ERROR_INVALID_ARG:
        return VIR_ERR_INVALID_ARG;
    case SP_ERROR_NOT_FOUND:
        return VIR_ERR_NO_STORAGE_VOL;
    case SP_ERROR_EXISTS:
        return VIR_ERR_STORAGE_VOL_EXIST;
    case SP_ERROR_BAD_IMAGE:
        return VIR_ERR_STORAGE_PROBE_FAILED;
    case SP_ERROR_UNSUPPORTED:
        return VIR_ERR_CONFIG_UNSUPPORTED;
    case SP_ERROR_IN_USE:
    case SP_ERROR_TIER_MISSING:
    case SP_ERROR_INVALID_STATE:
        return VIR_ERR_OPERATION_INVALID;
    case SP_ERROR_CANCELLED:
        return VIR_ERR_OPERATION_ABORTED;
    case SP_ERROR_XML:
        return VIR_ERR_XML_ERROR;
    case SP_ERROR_ARGUMENT_UNSUPPORTED:
        return VIR_ERR_ARGUMENT_UNSUPPORTED;
    case SP_ERROR_OPERATION_UNSUPPORTED:
        return VIR_ERR_OPERATION_UNSUPPORTED;
    case SP_ERROR_IO:
    case SP_ERROR_NO_SPACE:
    case SP_ERROR_CHANGED:
        break;
    }
    return VIR_ERR_OPERATION_FAILED;
}


/* A failed system call is reported as libvirt reports its own, with its
 * errno; everything else by what failed. */
int
stormpoolReportError(const GError *err)
{
    int errnum = spErrorErrno(err);

    if (errnum != 0)
        virReportSystemError(errnum, "%s", spErrorWhat(err));
    else
        virReportError(stormpoolErrorNumber(spErrorCode(err)), "%s", err->message);
    return -1;
}


SpImageFormat
stormpoolImageFormat(int format)
{
    return format == VIR_STORAGE_FILE_QCOW2 ? SP_IMAGE_FORMAT_QCOW2 : SP_IMAGE_FORMAT_RAW;
}


void
stormpoolNewVolume(virStorageVolDef *vol,
                   unsigned int flags,
                   SpNewVolume *out)
{
    virStorageSource *backing = vol->target.backingStore;
    virStoragePerms *perms = vol->target.perms;

    out->name = vol->name;
    out->path = vol->target.path;
    out->format = stormpoolImageFormat(vol->target.format);
    out->capacity = vol->target.capacity;
    out->backing_path = backing ? backing->path : NULL;
    out->backing_format = backing ? virStorageFileFormatTypeToString(backing->format) : NULL;
    out->mode = perms ? perms->mode : (mode_t) -1;
    out->uid = perms ? perms->uid : (uid_t) -1;
    out->gid = perms ? perms->gid : (gid_t) -1;
    out->prealloc_metadata = !!(flags & VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA);
}


static void
stormpoolVolSetBacking(virStorageVolDef *vol,
                       const SpVolume *volume)
{
    virStorageSource *backing;
    int format;

    if (!volume->backing_path) {
        g_clear_pointer(&vol->target.backingStore, virObjectUnref);
        return;
    }
    if (!vol->target.backingStore)
        vol->target.backingStore = virStorageSourceNew();
    backing = vol->target.backingStore;
    backing->type = VIR_STORAGE_TYPE_FILE;
    g_free(backing->path);
    backing->path = g_strdup(volume->backing_path);
    format = volume->info.backing_format
        ? virStorageFileFormatTypeFromString(volume->info.backing_format) : -1;
    backing->format = format < 0 ? VIR_STORAGE_FILE_NONE : format;
}


int
stormpoolVolUpdate(virStorageVolDef *vol,
                   const SpVolume *volume)
{
    struct stat sb = volume->sb;

    /* The descriptor only matters for SELinux labels; -1 skips them. */
    if (virStorageBackendUpdateVolTargetInfoFD(&vol->target, -1, &sb) < 0)
        return -1;

    vol->type = VIR_STORAGE_VOL_FILE;
    vol->target.type = VIR_STORAGE_TYPE_FILE;
    vol->target.capacity = volume->info.virtual_size;
    vol->target.allocation = volume->info.allocation;
    vol->target.physical = volume->info.file_size;
    /* A volume being built or copied from is read by callbacks that run
     * without the pool lock (they may hold a shallow copy of it): its
     * strings must not be freed under them, so only sizes change then. */
    if (vol->building || vol->in_use)
        return 0;
    g_clear_pointer(&vol->target.compat, g_free);
    if (volume->info.format == SP_IMAGE_FORMAT_QCOW2) {
        vol->target.format = VIR_STORAGE_FILE_QCOW2;
        vol->target.compat = g_strdup(volume->info.qcow2_version >= 3 ? "1.1" : "0.10");
    } else {
        vol->target.format = VIR_STORAGE_FILE_RAW;
    }
    stormpoolVolSetBacking(vol, volume);
    return 0;
}


/* ---- the core's log ---------------------------------------------------- */

static void
stormpoolLogCore(const gchar *domain G_GNUC_UNUSED,
                 GLogLevelFlags level,
                 const gchar *message,
                 gpointer opaque G_GNUC_UNUSED)
{
    virLogPriority priority = VIR_LOG_DEBUG;

    if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
        priority = VIR_LOG_ERROR;
    else if (level & G_LOG_LEVEL_WARNING)
        priority = VIR_LOG_WARN;
    else if (level & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO))
        priority = VIR_LOG_INFO;
    virLogMessage(&virLogSelf, priority, __FILE__, __LINE__, __func__, NULL, "%s", message);
}


void
stormpoolLogInit(void)
{
    g_log_set_handler("stormpool", G_LOG_LEVEL_MASK | G_LOG_FLAG_FATAL | G_LOG_FLAG_RECURSION,
                      stormpoolLogCore, NULL);
}


/* ---- XML namespace ------------------------------------------------------ */

static int
stormpoolNamespaceParse(xmlXPathContextPtr ctxt,
                        void **data)
{
    g_autoptr(GError) err = NULL;
    SpPool *pool;

    if (!(pool = spPoolNewFromXml(ctxt->node, &err)))
        return stormpoolReportError(err);
    *data = pool;
    return 0;
}


static int
stormpoolNamespaceFormat(virBuffer *buf,
                         void *data)
{
    g_autoptr(GPtrArray) lines = spPoolFormatXml(data);
    size_t i;

    for (i = 0; i < lines->len; i++)
        virBufferAsprintf(buf, "%s\n", (const char *) g_ptr_array_index(lines, i));
    return 0;
}


static void
stormpoolNamespaceFree(void *data)
{
    spPoolUnref(data);
}


virXMLNamespace stormpoolXMLNamespace = {
    .parse = stormpoolNamespaceParse,
    .free = stormpoolNamespaceFree,
    .format = stormpoolNamespaceFormat,
    .prefix = SP_POOL_NAMESPACE_PREFIX,
    .uri = SP_POOL_NAMESPACE_URI,
};
