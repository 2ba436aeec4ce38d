/*
 * storage_backend_stormpool.c: libvirt storage backend for tiered template
 *                              pools
 *
 * A stormpool pool keeps templates in its source directory (the primary
 * tier, big and slow disks) and the qcow2 overlays of the instances cloned
 * from them in its target directory (the secondary tier, SSDs). The module
 * only adapts libvirt's storage driver to the stormpool core library,
 * which holds the logic and has no libvirt dependency. This file has what
 * the module shares, the XML namespace hook and the pool lifecycle;
 * stormpool_refresh.c scans the tiers and stormpool_volumes.c handles the
 * volumes.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <config.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "storage_backend.h"
#include "storage_conf.h"
#include "storage_source_conf.h"
#include "storage_util.h"
#include "vircommand.h"
#include "virerror.h"
#include "virfile.h"
#include "virlog.h"
#include "virstorageobj.h"
#include "virxml.h"

#include "stormpool/atomic_file.h"
#include "stormpool/error.h"
#include "stormpool/file_copy.h"
#include "stormpool/header_cache.h"
#include "stormpool/image_header.h"
#include "stormpool/image_lock.h"
#include "stormpool/pool_namespace.h"
#include "stormpool/qcow2_overlay.h"
#include "stormpool/template_index.h"
#include "stormpool/template_replica.h"
#include "stormpool/template_stamps.h"
#include "stormpool/tier_layout.h"
#include "stormpool/volume_name.h"
#include "stormpool_module.h"
#include "stormpool_replicas.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

VIR_LOG_INIT("storage.storage_backend_stormpool");

int virStorageBackendStormpoolRegister(void);


int
stormpoolReportError(const GError *err)
{
    virErrorNumber code = VIR_ERR_INTERNAL_ERROR;

    switch ((SpErrorCode) err->code) {
    case SP_ERROR_INVALID_ARG:
        code = VIR_ERR_INVALID_ARG;
        break;
    case SP_ERROR_NOT_FOUND:
        code = VIR_ERR_NO_STORAGE_VOL;
        break;
    case SP_ERROR_EXISTS:
        code = VIR_ERR_STORAGE_VOL_EXIST;
        break;
    case SP_ERROR_IO:
        code = VIR_ERR_OPERATION_FAILED;
        break;
    case SP_ERROR_BAD_IMAGE:
        code = VIR_ERR_STORAGE_PROBE_FAILED;
        break;
    case SP_ERROR_UNSUPPORTED:
        code = VIR_ERR_CONFIG_UNSUPPORTED;
        break;
    case SP_ERROR_IN_USE:
        code = VIR_ERR_OPERATION_INVALID;
        break;
    case SP_ERROR_NO_SPACE:
        code = VIR_ERR_OPERATION_FAILED;
        break;
    case SP_ERROR_CANCELLED:
        code = VIR_ERR_OPERATION_ABORTED;
        break;
    case SP_ERROR_XML:
        code = VIR_ERR_XML_ERROR;
        break;
    }
    virReportError(code, "%s", err->message);
    return -1;
}


const char *
stormpoolPrimary(virStoragePoolObj *pool)
{
    return virStoragePoolObjGetDef(pool)->source.dir;
}


const char *
stormpoolSecondary(virStoragePoolObj *pool)
{
    return virStoragePoolObjGetDef(pool)->target.path;
}


bool
stormpoolVolIsInstance(virStoragePoolObj *pool,
                       virStorageVolDef *vol)
{
    return spPathIsInDir(vol->target.path, stormpoolSecondary(pool));
}


/* The name of the template behind an instance's backing file: the
 * template itself in the primary tier, or one of its replicas. */
char *
stormpoolBackingTemplateName(virStoragePoolObj *pool,
                             const char *backing_path)
{
    if (spPathIsInDir(backing_path, stormpoolPrimary(pool)))
        return g_path_get_basename(backing_path);
    return spReplicaTemplateName(stormpoolSecondary(pool), backing_path);
}


/* ---- XML namespace ---------------------------------------------------- */

/* The live status in the namespace data changes when volumes are built,
 * which the storage driver does without the pool lock: this lock orders
 * those changes with refresh and with formatting. */
static GMutex statusLock;


void
stormpoolStatusLock(void)
{
    g_mutex_lock(&statusLock);
}


void
stormpoolStatusUnlock(void)
{
    g_mutex_unlock(&statusLock);
}

static int
stormpoolNamespaceParse(xmlXPathContextPtr ctxt,
                        void **data)
{
    g_autoptr(GError) err = NULL;
    SpPoolNamespace *ns;

    if (!(ns = spPoolNamespaceParse(ctxt->node, &err)))
        return stormpoolReportError(err);
    *data = ns;
    return 0;
}


static int
stormpoolNamespaceFormat(virBuffer *buf,
                         void *data)
{
    g_autoptr(GPtrArray) lines = NULL;
    size_t i;

    stormpoolStatusLock();
    lines = spPoolNamespaceFormat(data);
    stormpoolStatusUnlock();

    for (i = 0; i < lines->len; i++)
        virBufferAsprintf(buf, "%s\n", (const char *) g_ptr_array_index(lines, i));
    return 0;
}


static void
stormpoolNamespaceFree(void *data)
{
    spPoolNamespaceFree(data);
}


static virXMLNamespace stormpoolXMLNamespace = {
    .parse = stormpoolNamespaceParse,
    .free = stormpoolNamespaceFree,
    .format = stormpoolNamespaceFormat,
    .prefix = SP_POOL_NAMESPACE_PREFIX,
    .uri = SP_POOL_NAMESPACE_URI,
};


/* ---- volume metadata -------------------------------------------------- */

static int
stormpoolFormatFromName(const char *name)
{
    int format;

    if (!name)
        return VIR_STORAGE_FILE_NONE;
    if ((format = virStorageFileFormatTypeFromString(name)) < 0)
        return VIR_STORAGE_FILE_NONE;
    return format;
}


static void
stormpoolVolSetBacking(virStorageVolDef *vol,
                       const SpImageInfo *info)
{
    virStorageSource *backing;

    if (!info->backing_file) {
        g_clear_pointer(&vol->target.backingStore, virObjectUnref);
        return;
    }
    if (!vol->target.backingStore)
        vol->target.backingStore = virStorageSourceNew();
    backing = vol->target.backingStore;
    backing->type = VIR_STORAGE_TYPE_FILE;
    g_free(backing->path);
    backing->path = spBackingFileResolve(vol->target.path, info->backing_file);
    backing->format = stormpoolFormatFromName(info->backing_format);
}


static int
stormpoolRunQemuImg(const char *const *args)
{
    g_autoptr(virCommand) cmd = NULL;
    g_autofree char *qemuimg = virFindFileInPath("qemu-img");

    if (!qemuimg) {
        virReportError(VIR_ERR_INTERNAL_ERROR, "%s",
                       _("qemu-img is needed for this operation but was not found"));
        return -1;
    }
    cmd = virCommandNew(qemuimg);
    virCommandAddArgSet(cmd, args);
    return virCommandRun(cmd, NULL);
}


int
stormpoolQemuImgConvert(const char *src,
                        const char *src_format,
                        const char *dst,
                        const char *dst_format)
{
    const char *args[] = { "convert", "-q", "-f", src_format, "-O", dst_format,
                           src, dst, NULL };

    return stormpoolRunQemuImg(args);
}


int
stormpoolQemuImgResize(const char *path,
                       const char *format,
                       unsigned long long capacity)
{
    g_autofree char *size = g_strdup_printf("%llu", capacity);
    const char *args[] = { "resize", "-q", "-f", format, path, size, NULL };

    return stormpoolRunQemuImg(args);
}


SpHeaderCache *
stormpoolHeaderCache(void)
{
    static gsize once;
    static SpHeaderCache *cache;

    if (g_once_init_enter(&once)) {
        cache = spHeaderCacheNew(SP_HEADER_CACHE_RACY_SECONDS);
        g_once_init_leave(&once, 1);
    }
    return cache;
}


/* Fill @vol from the image header and the inode of its file; @dirfd, if
 * not -1, is the descriptor of the volume's directory @dir. */
int
stormpoolVolUpdateFromFile(virStorageVolDef *vol,
                           int dirfd,
                           const char *dir,
                           SpImageInfo *info)
{
    g_autoptr(GError) err = NULL;
    VIR_AUTOCLOSE fd = -1;
    struct stat sb;

    if (dirfd >= 0) {
        /* Refresh: relative to the tier's descriptor, and without reading
         * headers that have not changed since the last refresh. */
        gboolean hit;

        if (!spHeaderCacheRead(stormpoolHeaderCache(), dirfd, dir, vol->name,
                               &sb, info, &hit, &err))
            return stormpoolReportError(err);
    } else {
        if ((fd = open(vol->target.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0) {
            virReportSystemError(errno, _("cannot open volume '%s'"), vol->target.path);
            return -1;
        }
        if (fstat(fd, &sb) < 0) {
            virReportSystemError(errno, _("cannot stat volume '%s'"), vol->target.path);
            return -1;
        }
        if (!spImageInfoReadFdStat(fd, &sb, info, &err))
            return stormpoolReportError(err);
    }
    if (info->format == SP_IMAGE_FORMAT_OTHER) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED,
                       _("'%s' is a %s image; stormpool volumes are qcow2 or raw"),
                       vol->target.path, info->other_format);
        return -1;
    }
    if (info->external_data_file) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED,
                       _("'%s' uses an external data file, which stormpool does not support"),
                       vol->target.path);
        return -1;
    }
    /* The descriptor only matters for SELinux labels; -1 skips them. */
    if (virStorageBackendUpdateVolTargetInfoFD(&vol->target, fd, &sb) < 0)
        return -1;

    vol->type = VIR_STORAGE_VOL_FILE;
    vol->target.type = VIR_STORAGE_TYPE_FILE;
    vol->target.capacity = info->virtual_size;
    vol->target.allocation = info->allocation;
    vol->target.physical = info->file_size;
    /* A volume being built or copied from is read by callbacks that run
     * without the pool lock (they may hold a shallow copy of it): its
     * strings must not be freed under them, so only sizes change then. */
    if (vol->building || vol->in_use)
        return 0;
    g_clear_pointer(&vol->target.compat, g_free);
    if (info->format == SP_IMAGE_FORMAT_QCOW2) {
        vol->target.format = VIR_STORAGE_FILE_QCOW2;
        vol->target.compat = g_strdup(info->qcow2_version >= 3 ? "1.1" : "0.10");
    } else {
        vol->target.format = VIR_STORAGE_FILE_RAW;
    }
    stormpoolVolSetBacking(vol, info);
    return 0;
}


/* ---- pool ------------------------------------------------------------- */

static int
stormpoolCheckPool(virStoragePoolObj *pool,
                   bool *isActive)
{
    *isActive = virFileIsDir(stormpoolPrimary(pool)) &&
                virFileIsDir(stormpoolSecondary(pool));
    return 0;
}


int
stormpoolStartPool(virStoragePoolObj *pool)
{
    g_autoptr(GError) err = NULL;
    SpReplicaPolicy policy;

    if (!spTierLayoutCheck(stormpoolPrimary(pool), stormpoolSecondary(pool), &err))
        return stormpoolReportError(err);
    return stormpoolReplicaPolicy(pool, &policy);
}


/* Only a real start lets replica copies into the tier run again: libvirt
 * also refreshes a pool that was destroyed meanwhile (after an upload). */
static int
stormpoolStartPoolCallback(virStoragePoolObj *pool)
{
    if (stormpoolStartPool(pool) < 0)
        return -1;
    stormpoolReplicasAllow(stormpoolSecondary(pool));
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
    if (virDirCreate(path, mode, perms->uid, perms->gid,
                     VIR_DIR_CREATE_ALLOW_EXIST) < 0)
        return -1;
    return 0;
}


static int
stormpoolBuildPool(virStoragePoolObj *pool,
                   unsigned int flags)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(pool);
    g_autoptr(GError) err = NULL;

    virCheckFlags(VIR_STORAGE_POOL_BUILD_OVERWRITE |
                  VIR_STORAGE_POOL_BUILD_NO_OVERWRITE, -1);

    VIR_EXCLUSIVE_FLAGS_RET(VIR_STORAGE_POOL_BUILD_OVERWRITE,
                            VIR_STORAGE_POOL_BUILD_NO_OVERWRITE, -1);

    if (!spTierLayoutValidatePaths(def->source.dir, def->target.path, &err))
        return stormpoolReportError(err);

    if (stormpoolBuildTier(def->source.dir, &def->target.perms) < 0 ||
        stormpoolBuildTier(def->target.path, &def->target.perms) < 0)
        return -1;

    VIR_INFO("built stormpool pool '%s': primary tier '%s', secondary tier '%s'",
             def->name, def->source.dir, def->target.path);
    return 0;
}


static int
stormpoolStopPool(virStoragePoolObj *pool)
{
    SpPoolNamespace *ns = virStoragePoolObjGetDef(pool)->namespaceData;

    /* A copy into a stopped pool would go on for minutes behind the
     * admin's back, and keep pool-delete from removing the tier. */
    stormpoolReplicasStop(stormpoolSecondary(pool));
    if (ns) {
        stormpoolStatusLock();
        spPoolNamespaceClearStatus(ns);
        stormpoolStatusUnlock();
    }
    return 0;
}


static int
stormpoolDeleteTier(const char *path)
{
    if (rmdir(path) < 0 && errno != ENOENT) {
        virReportSystemError(errno, _("cannot remove directory '%s'"), path);
        return -1;
    }
    return 0;
}


static int
stormpoolDeletePool(virStoragePoolObj *pool,
                    unsigned int flags)
{
    g_autofree char *stamps = g_build_filename(stormpoolSecondary(pool),
                                               SP_TEMPLATE_STAMPS_FILE, NULL);

    virCheckFlags(0, -1);

    /* The pool's own bookkeeping file is no volume; it goes first. */
    if (unlink(stamps) < 0 && errno != ENOENT)
        VIR_WARN("cannot remove '%s': %s", stamps, g_strerror(errno));
    /* Like a dir pool: rmdir refuses directories that still hold files,
     * so pool-delete never destroys a template or an instance. */
    if (stormpoolDeleteTier(stormpoolSecondary(pool)) < 0 ||
        stormpoolDeleteTier(stormpoolPrimary(pool)) < 0)
        return -1;
    return 0;
}


static virStorageBackend virStorageBackendStormpool = {
    .type = VIR_STORAGE_POOL_STORMPOOL,

    .checkPool = stormpoolCheckPool,
    .startPool = stormpoolStartPoolCallback,
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
    if (virStorageBackendRegister(&virStorageBackendStormpool) < 0)
        return -1;

    return virStorageBackendNamespaceInit(VIR_STORAGE_POOL_STORMPOOL,
                                          &stormpoolXMLNamespace);
}
