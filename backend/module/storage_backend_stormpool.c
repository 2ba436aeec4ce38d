/*
 * storage_backend_stormpool.c: libvirt storage backend for tiered template
 *                              pools
 *
 * A stormpool pool keeps templates in its source directory (the primary
 * tier, big and slow disks) and the qcow2 overlays of the instances cloned
 * from them in its target directory (the secondary tier, SSDs). This file
 * only adapts libvirt's storage driver to the stormpool core library,
 * which holds the logic and has no libvirt dependency.
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
#include "virerror.h"
#include "virfile.h"
#include "virlog.h"
#include "virstorageobj.h"
#include "virxml.h"

#include "stormpool/atomic_file.h"
#include "stormpool/error.h"
#include "stormpool/file_copy.h"
#include "stormpool/image_header.h"
#include "stormpool/image_lock.h"
#include "stormpool/pool_namespace.h"
#include "stormpool/qcow2_overlay.h"
#include "stormpool/template_index.h"
#include "stormpool/template_replica.h"
#include "stormpool/tier_layout.h"
#include "stormpool/volume_name.h"
#include "stormpool_replicas.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

VIR_LOG_INIT("storage.storage_backend_stormpool");

/* How many dependents an error message names before "and N more". */
#define STORMPOOL_DEPENDENTS_LISTED 5

int virStorageBackendStormpoolRegister(void);


static int
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
    case SP_ERROR_XML:
        code = VIR_ERR_XML_ERROR;
        break;
    }
    virReportError(code, "%s", err->message);
    return -1;
}


static const char *
stormpoolPrimary(virStoragePoolObj *pool)
{
    return virStoragePoolObjGetDef(pool)->source.dir;
}


static const char *
stormpoolSecondary(virStoragePoolObj *pool)
{
    return virStoragePoolObjGetDef(pool)->target.path;
}


static bool
stormpoolVolIsInstance(virStoragePoolObj *pool,
                       virStorageVolDef *vol)
{
    return spPathIsInDir(vol->target.path, stormpoolSecondary(pool));
}


/* The name of the template behind an instance's backing file: the
 * template itself in the primary tier, or one of its replicas. */
static char *
stormpoolBackingTemplateName(virStoragePoolObj *pool,
                             const char *backing_path)
{
    if (spPathIsInDir(backing_path, stormpoolPrimary(pool)))
        return g_path_get_basename(backing_path);
    return spReplicaTemplateName(stormpoolSecondary(pool), backing_path);
}


/* libvirt's storage driver knows nothing of domains, so a volume in use is
 * recognised the way QEMU itself protects images: by its image locks. That
 * also covers a QEMU started by hand. */
static int
stormpoolCheckNotInUse(virStorageVolDef *vol,
                       const char *action)
{
    g_autoptr(GError) err = NULL;
    gboolean in_use = FALSE;

    if (!spImageInUse(vol->target.path, &in_use, &err)) {
        if (err->code == SP_ERROR_NOT_FOUND)
            return 0;
        return stormpoolReportError(err);
    }
    if (in_use) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot %s '%s': it is in use by a running guest or "
                         "another QEMU process (its image is locked)"),
                       action, vol->name);
        return -1;
    }
    return 0;
}


static int
stormpoolCheckNoWriter(virStorageVolDef *vol)
{
    g_autoptr(GError) err = NULL;
    gboolean has_writer = FALSE;

    if (!spImageHasWriter(vol->target.path, &has_writer, &err))
        return stormpoolReportError(err);
    if (has_writer) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot copy '%s': a running guest or another QEMU "
                         "process is writing to it"), vol->name);
        return -1;
    }
    return 0;
}


/* Like stormpoolCheckNotInUse, but keeps QEMU out until the returned
 * descriptor is closed, for changes that must not race a guest start. */
static int
stormpoolLockNotInUse(virStorageVolDef *vol,
                      const char *action)
{
    g_autoptr(GError) err = NULL;
    int fd;

    if ((fd = spImageLockExclusive(vol->target.path, &err)) >= 0)
        return fd;
    if (err->code == SP_ERROR_IN_USE) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot %s '%s': it is in use by a running guest or "
                         "another QEMU process (its image is locked)"),
                       action, vol->name);
        return -1;
    }
    return stormpoolReportError(err);
}


/* ---- XML namespace ---------------------------------------------------- */

/* The live status in the namespace data changes when volumes are built,
 * which the storage driver does without the pool lock: this lock orders
 * those changes with refresh and with formatting. */
static GMutex stormpoolStatusLock;

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

    g_mutex_lock(&stormpoolStatusLock);
    lines = spPoolNamespaceFormat(data);
    g_mutex_unlock(&stormpoolStatusLock);

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


/* Fill @vol from the image header and the inode of its file; @dirfd, if
 * not -1, is the descriptor of the volume's directory. */
static int
stormpoolVolUpdateFromFile(virStorageVolDef *vol,
                           int dirfd,
                           SpImageInfo *info)
{
    g_autoptr(GError) err = NULL;
    VIR_AUTOCLOSE fd = -1;
    int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
    struct stat sb;

    /* Refresh opens thousands of volumes of one directory: relative to
     * its descriptor, the path is not walked again each time. */
    if (dirfd >= 0)
        fd = openat(dirfd, vol->name, flags);
    else
        fd = open(vol->target.path, flags);
    if (fd < 0) {
        virReportSystemError(errno, _("cannot open volume '%s'"), vol->target.path);
        return -1;
    }
    if (fstat(fd, &sb) < 0) {
        virReportSystemError(errno, _("cannot stat volume '%s'"), vol->target.path);
        return -1;
    }
    if (!S_ISREG(sb.st_mode)) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("volume '%s' is not a regular file"), vol->target.path);
        return -1;
    }
    if (!spImageInfoReadFdStat(fd, &sb, info, &err))
        return stormpoolReportError(err);
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
    if (virStorageBackendUpdateVolTargetInfoFD(&vol->target, fd, &sb) < 0)
        return -1;

    vol->type = VIR_STORAGE_VOL_FILE;
    vol->target.type = VIR_STORAGE_TYPE_FILE;
    vol->target.capacity = info->virtual_size;
    vol->target.allocation = info->allocation;
    vol->target.physical = info->file_size;
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


static int
stormpoolStartPool(virStoragePoolObj *pool)
{
    g_autoptr(GError) err = NULL;
    SpReplicaPolicy policy;

    if (!spTierLayoutCheck(stormpoolPrimary(pool), stormpoolSecondary(pool), &err))
        return stormpoolReportError(err);
    return stormpoolReplicaPolicy(pool, &policy);
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


/* A crash between creating a temporary file and renaming it leaves the
 * temporary file behind; it is never a volume, so remove it. The storage
 * driver refuses a refresh while volume builds run, so none is in use. */
static void
stormpoolRemoveStaleTmpFiles(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *path = NULL;

        if (!spAtomicFileIsTmpName(name))
            continue;
        path = g_build_filename(dir, name, NULL);
        if (unlink(path) == 0)
            VIR_WARN("removed '%s' left behind by an interrupted volume creation", path);
        else
            VIR_WARN("cannot remove stale temporary file '%s': %s", path, g_strerror(errno));
    }
}


/* Why @info does not describe an instance of this pool, or NULL. */
static const char *
stormpoolNotAnInstanceReason(virStoragePoolObj *pool,
                             virStorageVolDef *vol)
{
    g_autofree char *name = NULL;

    if (vol->target.format != VIR_STORAGE_FILE_QCOW2)
        return "it is not a qcow2 overlay";
    if (!vol->target.backingStore || !vol->target.backingStore->path)
        return "it has no backing file";
    if (!(name = stormpoolBackingTemplateName(pool, vol->target.backingStore->path)))
        return "its backing file is neither a template nor a replica of this pool";
    return NULL;
}


typedef struct {
    virStoragePoolObj *pool;
    SpTier tier;
    const char *dir;
    int dirfd;
    GHashTable *backing_seen;   /* backing path -> exists, checked once */
} TierScan;


static void
stormpoolWarnMissingBacking(TierScan *scan,
                            virStorageVolDef *vol)
{
    const char *backing = vol->target.backingStore->path;
    gpointer known;
    bool exists;

    if (g_hash_table_lookup_extended(scan->backing_seen, backing, NULL, &known)) {
        exists = GPOINTER_TO_INT(known);
    } else {
        exists = virFileExists(backing);
        g_hash_table_insert(scan->backing_seen, g_strdup(backing), GINT_TO_POINTER(exists));
    }
    if (!exists)
        VIR_WARN("instance '%s' backs onto missing template '%s'",
                 vol->target.path, backing);
}


static void
stormpoolRefreshOne(TierScan *scan,
                    const char *name)
{
    virStoragePoolObj *pool = scan->pool;
    SpTier tier = scan->tier;
    const char *dir = scan->dir;
    g_autoptr(virStorageVolDef) vol = g_new0(virStorageVolDef, 1);
    g_auto(SpImageInfo) info = { 0 };
    const char *reason;

    if (virStorageVolDefFindByName(pool, name)) {
        VIR_WARN("skipping '%s/%s': a volume of that name exists in the other tier",
                 dir, name);
        return;
    }

    vol->name = g_strdup(name);
    vol->target.path = g_build_filename(dir, name, NULL);
    vol->key = g_strdup(vol->target.path);

    if (stormpoolVolUpdateFromFile(vol, scan->dirfd, &info) < 0) {
        VIR_WARN("skipping '%s': %s", vol->target.path, virGetLastErrorMessage());
        virResetLastError();
        return;
    }
    if (tier == SP_TIER_SECONDARY &&
        (reason = stormpoolNotAnInstanceReason(pool, vol))) {
        VIR_WARN("skipping '%s': not an instance of this pool, %s",
                 vol->target.path, reason);
        return;
    }
    if (tier == SP_TIER_SECONDARY)
        stormpoolWarnMissingBacking(scan, vol);

    if (virStoragePoolObjAddVol(pool, vol) < 0) {
        VIR_WARN("cannot add volume '%s': %s", name, virGetLastErrorMessage());
        virResetLastError();
        return;
    }
    vol = NULL;
}


static int
stormpoolRefreshTier(virStoragePoolObj *pool,
                     SpTier tier,
                     const char *dir)
{
    g_autoptr(GDir) d = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(GHashTable) backing_seen = g_hash_table_new_full(g_str_hash, g_str_equal,
                                                               g_free, NULL);
    VIR_AUTOCLOSE dirfd = -1;
    TierScan scan = { pool, tier, dir, -1, backing_seen };
    const char *name;

    stormpoolRemoveStaleTmpFiles(dir);

    if (!(d = g_dir_open(dir, 0, &err)) ||
        (dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        virReportError(VIR_ERR_OPERATION_FAILED,
                       _("cannot read %s tier directory '%s': %s"),
                       spTierName(tier), dir, err ? err->message : g_strerror(errno));
        return -1;
    }
    scan.dirfd = dirfd;
    while ((name = g_dir_read_name(d))) {
        if (name[0] == '.')
            continue;
        stormpoolRefreshOne(&scan, name);
    }
    return 0;
}


/* ---- replicas at refresh --------------------------------------------- */

static int
stormpoolCountBackingFile(virStorageVolDef *vol,
                          const void *opaque)
{
    GHashTable *counts = (GHashTable *) opaque;
    const char *path;

    if (!vol->target.backingStore || !(path = vol->target.backingStore->path))
        return 0;
    /* The keys are borrowed: the volumes outlive the table, which lives
     * only while the pool is locked. */
    g_hash_table_insert(counts, (gpointer) path,
                        GUINT_TO_POINTER(GPOINTER_TO_UINT(g_hash_table_lookup(counts, path)) + 1));
    return 0;
}


/* With prepare='eager', the replica of each template's current identity
 * is wanted even before its first instance. */
static bool
stormpoolReplicaWanted(virStoragePoolObj *pool,
                       const char *replica_path)
{
    SpPoolNamespace *ns = virStoragePoolObjGetDef(pool)->namespaceData;
    g_autofree char *name = NULL;
    g_autofree char *template_path = NULL;
    g_autofree char *identity = NULL;
    g_autofree char *current = NULL;

    if (!ns || !ns->replica_eager ||
        !(name = spReplicaTemplateName(stormpoolSecondary(pool), replica_path)))
        return false;
    template_path = g_build_filename(stormpoolPrimary(pool), name, NULL);
    if (!(identity = spReplicaIdentity(template_path, NULL)))
        return false;
    current = spReplicaPath(stormpoolSecondary(pool), name, identity);
    return STREQ(current, replica_path);
}


static SpReplicaStatus *
stormpoolReplicaStatus(const SpReplicaInfo *replica,
                       guint dependents)
{
    SpReplicaStatus *status = g_new0(SpReplicaStatus, 1);

    status->template_name = g_strdup(replica->template_name);
    status->path = g_strdup(replica->path);
    status->dependents = dependents;
    status->size = replica->size;
    status->allocation = replica->allocation;
    return status;
}


/* Dependents are counted from the overlays' own headers, read by this
 * refresh: there is no side database that could drift. Replicas nobody
 * uses any more (their instances were deleted behind libvirt's back) are
 * removed, unless prepare='eager' wants them. */
static GPtrArray *
stormpoolScanReplicas(virStoragePoolObj *pool)
{
    g_autoptr(GHashTable) counts = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GPtrArray) replicas = NULL;
    g_autoptr(GError) err = NULL;
    GPtrArray *status = g_ptr_array_new_with_free_func((GDestroyNotify) spReplicaStatusFree);
    guint i;

    if (!(replicas = spReplicaList(stormpoolSecondary(pool), &err))) {
        VIR_WARN("cannot list replicas: %s", err->message);
        return status;
    }
    virStoragePoolObjForEachVolume(pool, stormpoolCountBackingFile, counts);

    for (i = 0; i < replicas->len; i++) {
        SpReplicaInfo *replica = g_ptr_array_index(replicas, i);
        guint n = GPOINTER_TO_UINT(g_hash_table_lookup(counts, replica->path));

        if (n == 0 && !stormpoolReplicaInProgress(replica->path) &&
            !stormpoolReplicaWanted(pool, replica->path)) {
            if (spReplicaRemove(replica->path, NULL))
                VIR_INFO("removed unused replica '%s'", replica->path);
            continue;
        }
        g_ptr_array_add(status, stormpoolReplicaStatus(replica, n));
    }
    return status;
}


/* Temporary files of replicas whose making was interrupted; a replica
 * being made right now keeps its own. */
static void
stormpoolRemoveStaleReplicaTmpFiles(virStoragePoolObj *pool)
{
    g_autofree char *root = g_build_filename(stormpoolSecondary(pool), SP_REPLICA_DIR, NULL);
    g_autoptr(GDir) d = g_dir_open(root, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *dir = g_build_filename(root, name, NULL);

        if (!stormpoolReplicaDirBusy(dir))
            stormpoolRemoveStaleTmpFiles(dir);
    }
}


static int
stormpoolPrepareTemplateReplica(virStorageVolDef *vol,
                                const void *opaque)
{
    virStoragePoolObj *pool = (virStoragePoolObj *) opaque;
    g_autofree char *identity = NULL;
    g_autofree char *replica = NULL;
    SpReplicaPolicy policy;

    if (stormpoolVolIsInstance(pool, vol) || stormpoolReplicaPolicy(pool, &policy) < 0) {
        virResetLastError();
        return 0;
    }
    if (!(identity = spReplicaIdentity(vol->target.path, NULL)))
        return 0;
    replica = spReplicaPath(stormpoolSecondary(pool), vol->name, identity);
    stormpoolReplicaPrepare(vol->target.path, replica, policy);
    return 0;
}


/* What a template looked like at the previous refresh, by path. Templates
 * are never changed by this pool while instances depend on them, so a
 * change seen here happened behind libvirt's back. */
typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} TemplateStamp;

static GMutex templateStampsLock;
static GHashTable *templateStamps;

typedef struct {
    const char *template_path;
    struct stat sb;
    bool in_place;
    GPtrArray *at_risk;
} AtRiskSearch;

typedef struct {
    virStoragePoolObj *pool;
    GPtrArray *changed;
} ChangedCollect;


static int
stormpoolFindAtRisk(virStorageVolDef *vol,
                    const void *opaque)
{
    AtRiskSearch *search = (AtRiskSearch *) opaque;
    const char *backing = vol->target.backingStore ? vol->target.backingStore->path : NULL;
    struct stat sb;

    if (!backing)
        return 0;
    /* Instances on the template itself see any change; those on a hard
     * link of it see changes made in place. Copies are safe. */
    if (STREQ(backing, search->template_path) ||
        (search->in_place && stat(backing, &sb) == 0 &&
         sb.st_dev == search->sb.st_dev && sb.st_ino == search->sb.st_ino))
        g_ptr_array_add(search->at_risk, vol->name);
    return 0;
}


static bool
stormpoolStampChanged(const char *path,
                      const struct stat *sb,
                      bool *in_place)
{
    TemplateStamp *old;
    TemplateStamp *now = g_new0(TemplateStamp, 1);
    bool changed = false;

    now->dev = sb->st_dev;
    now->ino = sb->st_ino;
    now->size = sb->st_size;
    now->mtime = sb->st_mtim;

    g_mutex_lock(&templateStampsLock);
    if (!templateStamps)
        templateStamps = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    if ((old = g_hash_table_lookup(templateStamps, path))) {
        changed = old->size != now->size || old->mtime.tv_sec != now->mtime.tv_sec ||
                  old->mtime.tv_nsec != now->mtime.tv_nsec || old->ino != now->ino ||
                  old->dev != now->dev;
        *in_place = old->ino == now->ino && old->dev == now->dev;
    }
    g_hash_table_insert(templateStamps, g_strdup(path), now);
    g_mutex_unlock(&templateStampsLock);
    return changed;
}


typedef struct {
    char *path;
    struct stat sb;
    bool in_place;
} ChangedTemplate;


static void
changedTemplateFree(ChangedTemplate *changed)
{
    g_free(changed->path);
    g_free(changed);
}


static int
stormpoolCollectChangedTemplate(virStorageVolDef *vol,
                                const void *opaque)
{
    const ChangedCollect *collect = opaque;
    ChangedTemplate changed = { 0 };

    if (stormpoolVolIsInstance(collect->pool, vol) || stat(vol->target.path, &changed.sb) < 0 ||
        !stormpoolStampChanged(vol->target.path, &changed.sb, &changed.in_place))
        return 0;
    changed.path = g_strdup(vol->target.path);
    g_ptr_array_add(collect->changed, g_memdup(&changed, sizeof(changed)));
    return 0;
}


static int
stormpoolCompareNames(gconstpointer a,
                      gconstpointer b)
{
    return strcmp(*(const char * const *) a, *(const char * const *) b);
}


static void
stormpoolReportAtRisk(virStoragePoolObj *pool,
                      ChangedTemplate *changed)
{
    g_autoptr(GPtrArray) at_risk = g_ptr_array_new();
    g_autofree char *names = NULL;
    AtRiskSearch search = {
        .template_path = changed->path,
        .sb = changed->sb,
        .in_place = changed->in_place,
        .at_risk = at_risk,
    };

    virStoragePoolObjForEachVolume(pool, stormpoolFindAtRisk, &search);
    if (at_risk->len == 0) {
        VIR_INFO("template '%s' changed; no instance depends on it directly", changed->path);
        return;
    }
    g_ptr_array_sort(at_risk, stormpoolCompareNames);
    g_ptr_array_add(at_risk, NULL);
    names = g_strjoinv(", ", (char **) at_risk->pdata);
    VIR_ERROR(_("template '%s' changed behind libvirt's back while %u instance(s) "
                "depend on it directly; their data is at risk: %s"),
              changed->path, at_risk->len - 1, names);
}


/* Volume iterators hold each volume's lock, so the search for instances
 * at risk runs after the walk over templates, never nested in it. */
static void
stormpoolCheckTemplateStamps(virStoragePoolObj *pool)
{
    g_autoptr(GPtrArray) changed = g_ptr_array_new_with_free_func((GDestroyNotify) changedTemplateFree);
    ChangedCollect collect = { pool, changed };
    guint i;

    virStoragePoolObjForEachVolume(pool, stormpoolCollectChangedTemplate, &collect);
    for (i = 0; i < changed->len; i++)
        stormpoolReportAtRisk(pool, g_ptr_array_index(changed, i));
}


static int
stormpoolRefreshReplicas(virStoragePoolObj *pool)
{
    SpPoolNamespace *ns = virStoragePoolObjGetDef(pool)->namespaceData;
    SpReplicaPolicy policy;

    if (stormpoolReplicaPolicy(pool, &policy) < 0)
        return -1;
    stormpoolRemoveStaleReplicaTmpFiles(pool);
    stormpoolCheckTemplateStamps(pool);
    if (ns && ns->replica_eager && policy != SP_REPLICA_NONE)
        virStoragePoolObjForEachVolume(pool, stormpoolPrepareTemplateReplica, pool);
    if (ns) {
        GPtrArray *status = stormpoolScanReplicas(pool);

        g_mutex_lock(&stormpoolStatusLock);
        spPoolNamespaceSetReplicas(ns, policy, status);
        g_mutex_unlock(&stormpoolStatusLock);
    }
    return 0;
}


/* Keep pool-dumpxml's replica status current between refreshes: @delta
 * instances more or fewer back onto @backing_path, if it is a replica. */
static void
stormpoolNoteReplicaUse(virStoragePoolObj *pool,
                        const char *backing_path,
                        int delta)
{
    SpPoolNamespace *ns = virStoragePoolObjGetDef(pool)->namespaceData;
    g_autofree char *name = spReplicaTemplateName(stormpoolSecondary(pool), backing_path);
    struct stat sb;

    if (!ns || !name)
        return;
    g_mutex_lock(&stormpoolStatusLock);
    if (stat(backing_path, &sb) < 0)
        spPoolNamespaceRemoveReplica(ns, backing_path);
    else
        spPoolNamespaceAdjustReplica(ns, name, backing_path, delta, sb.st_size,
                                     (guint64) sb.st_blocks * 512);
    g_mutex_unlock(&stormpoolStatusLock);
}


static int
stormpoolRefreshUsage(virStoragePoolObj *pool)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(pool);
    SpPoolNamespace *ns = def->namespaceData;
    g_autoptr(GError) err = NULL;
    SpTierUsage primary, secondary;

    if (!spTierUsageGet(def->source.dir, &primary, &err) ||
        !spTierUsageGet(def->target.path, &secondary, &err))
        return stormpoolReportError(err);

    /* Instances grow in the secondary tier, so that is what pool-info shows. */
    def->capacity = secondary.capacity;
    def->allocation = secondary.allocation;
    def->available = secondary.available;

    if (ns) {
        g_mutex_lock(&stormpoolStatusLock);
        spPoolNamespaceSetStatus(ns, SP_TIER_PRIMARY, def->source.dir, &primary);
        spPoolNamespaceSetStatus(ns, SP_TIER_SECONDARY, def->target.path, &secondary);
        g_mutex_unlock(&stormpoolStatusLock);
    }
    return 0;
}


static int
stormpoolRefreshPool(virStoragePoolObj *pool)
{
    /* A tier can vanish or turn read-only while the pool runs. */
    if (stormpoolStartPool(pool) < 0)
        return -1;

    /* Templates first, so that instances can be checked against them. */
    if (stormpoolRefreshTier(pool, SP_TIER_PRIMARY, stormpoolPrimary(pool)) < 0 ||
        stormpoolRefreshTier(pool, SP_TIER_SECONDARY, stormpoolSecondary(pool)) < 0)
        return -1;

    if (stormpoolRefreshReplicas(pool) < 0)
        return -1;

    VIR_DEBUG("refreshed stormpool pool '%s': %zu volumes",
              virStoragePoolObjGetDef(pool)->name,
              virStoragePoolObjGetVolumesCount(pool));
    return stormpoolRefreshUsage(pool);
}


static int
stormpoolStopPool(virStoragePoolObj *pool)
{
    SpPoolNamespace *ns = virStoragePoolObjGetDef(pool)->namespaceData;

    if (ns) {
        g_mutex_lock(&stormpoolStatusLock);
        spPoolNamespaceClearStatus(ns);
        g_mutex_unlock(&stormpoolStatusLock);
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
    virCheckFlags(0, -1);

    /* Like a dir pool: rmdir refuses directories that still hold files,
     * so pool-delete never destroys a template or an instance. */
    if (stormpoolDeleteTier(stormpoolSecondary(pool)) < 0 ||
        stormpoolDeleteTier(stormpoolPrimary(pool)) < 0)
        return -1;
    return 0;
}


/* ---- volume creation -------------------------------------------------- */

/* Names are unique across both tiers, also for files that appeared behind
 * libvirt's back since the last refresh. */
static int
stormpoolCheckNameFree(virStoragePoolObj *pool,
                       const char *name)
{
    const char *dirs[] = { stormpoolPrimary(pool), stormpoolSecondary(pool) };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(dirs); i++) {
        g_autofree char *path = g_build_filename(dirs[i], name, NULL);
        struct stat sb;

        if (lstat(path, &sb) == 0) {
            virReportError(VIR_ERR_STORAGE_VOL_EXIST,
                           _("a file named '%s' already exists in the %s tier '%s'"),
                           name, spTierName(i == 0 ? SP_TIER_PRIMARY : SP_TIER_SECONDARY),
                           dirs[i]);
            return -1;
        }
    }
    return 0;
}


static virStorageVolDef *
stormpoolFindBacking(virStoragePoolObj *pool,
                     const char *spec)
{
    g_autofree char *clean = NULL;
    virStorageVolDef *vol;

    if (!strchr(spec, '/'))
        return virStorageVolDefFindByName(pool, spec);

    clean = virFileSanitizePath(spec);
    if ((vol = virStorageVolDefFindByPath(pool, clean)))
        return vol;
    return virStorageVolDefFindByKey(pool, clean);
}


static virStorageVolDef *
stormpoolLookupTemplate(virStoragePoolObj *pool,
                        const char *spec)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(pool);
    virStorageVolDef *template = stormpoolFindBacking(pool, spec);

    if (!template) {
        virReportError(VIR_ERR_NO_STORAGE_VOL,
                       _("backing volume '%s' is not a template of pool '%s' "
                         "(templates are the volumes in '%s')"),
                       spec, def->name, def->source.dir);
        return NULL;
    }
    if (stormpoolVolIsInstance(pool, template)) {
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
    return template;
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


/* Where an instance of @template backs onto under the pool's policy. */
static char *
stormpoolInstanceBacking(virStoragePoolObj *pool,
                         virStorageVolDef *template)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *identity = NULL;
    SpReplicaPolicy policy;

    if (stormpoolReplicaPolicy(pool, &policy) < 0)
        return NULL;
    if (policy == SP_REPLICA_NONE)
        return g_strdup(template->target.path);
    if (!(identity = spReplicaIdentity(template->target.path, &err))) {
        stormpoolReportError(err);
        return NULL;
    }
    return spReplicaPath(stormpoolSecondary(pool), template->name, identity);
}


static int
stormpoolPrepareInstance(virStoragePoolObj *pool,
                         virStorageVolDef *vol)
{
    virStorageSource *backing = vol->target.backingStore;
    virStorageVolDef *template;
    g_autofree char *replica_of = NULL;

    if (vol->target.format != VIR_STORAGE_FILE_QCOW2) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED,
                       _("instance '%s' must be a qcow2 overlay, not %s"),
                       vol->name, virStorageFileFormatTypeToString(vol->target.format));
        return -1;
    }
    if (!backing->path)
        return -1;
    /* vol-clone hands over the source instance's backing file, which may
     * be a replica: stand for its template. */
    if ((replica_of = spReplicaTemplateName(stormpoolSecondary(pool), backing->path))) {
        g_free(backing->path);
        backing->path = g_steal_pointer(&replica_of);
    }
    if (!(template = stormpoolLookupTemplate(pool, backing->path)))
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
    if (!(backing->path = stormpoolInstanceBacking(pool, template)))
        return -1;
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

    vol->target.path = g_build_filename(stormpoolSecondary(pool), vol->name, NULL);
    return 0;
}


static int
stormpoolPrepareTemplate(virStoragePoolObj *pool,
                         virStorageVolDef *vol)
{
    if (vol->target.capacity == 0) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("template '%s' needs a capacity"), vol->name);
        return -1;
    }
    vol->target.path = g_build_filename(stormpoolPrimary(pool), vol->name, NULL);
    return 0;
}


static int
stormpoolCreateVol(virStoragePoolObj *pool,
                   virStorageVolDef *vol)
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
    if (stormpoolCheckNameFree(pool, vol->name) < 0)
        return -1;

    vol->type = VIR_STORAGE_VOL_FILE;
    g_clear_pointer(&vol->target.path, g_free);
    if (vol->target.backingStore) {
        if (stormpoolPrepareInstance(pool, vol) < 0)
            return -1;
    } else if (stormpoolPrepareTemplate(pool, vol) < 0) {
        return -1;
    }
    if (stormpoolCheckCapacity(vol) < 0)
        return -1;

    g_free(vol->key);
    vol->key = g_strdup(vol->target.path);
    return 0;
}


static mode_t
stormpoolVolMode(virStorageVolDef *vol)
{
    if (!vol->target.perms || vol->target.perms->mode == (mode_t)-1)
        return VIR_STORAGE_DEFAULT_VOL_PERM_MODE;
    return vol->target.perms->mode;
}


/* Open the temporary file a volume is written to, owned as requested. */
static SpAtomicFile *
stormpoolBeginVolFile(virStorageVolDef *vol)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SpAtomicFile) file = NULL;
    uid_t uid = vol->target.perms ? vol->target.perms->uid : (uid_t)-1;
    gid_t gid = vol->target.perms ? vol->target.perms->gid : (gid_t)-1;

    if (!(file = spAtomicFileBegin(vol->target.path, stormpoolVolMode(vol), &err))) {
        stormpoolReportError(err);
        return NULL;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
        fchown(spAtomicFileFd(file), uid, gid) < 0) {
        virReportSystemError(errno, _("cannot set owner of '%s' to %u:%u"),
                             vol->target.path, (unsigned int) uid, (unsigned int) gid);
        return NULL;
    }
    return g_steal_pointer(&file);
}


static int
stormpoolCommitVolFile(SpAtomicFile *file,
                       bool replace)
{
    g_autoptr(GError) err = NULL;

    if (!spAtomicFileCommit(file, replace, &err))
        return stormpoolReportError(err);
    return 0;
}


static int
stormpoolWriteQcow2(virStorageVolDef *vol,
                    unsigned long long capacity,
                    const char *backing_file,
                    const char *backing_format,
                    bool replace)
{
    g_autoptr(SpAtomicFile) file = NULL;
    g_autoptr(GError) err = NULL;
    SpQcow2Spec spec = {
        .virtual_size = capacity,
        .backing_file = backing_file,
        .backing_format = backing_format,
    };

    if (!spQcow2SpecValidate(&spec, &err))
        return stormpoolReportError(err);
    if (!(file = stormpoolBeginVolFile(vol)))
        return -1;
    if (!spQcow2WriteFd(spAtomicFileFd(file), &spec, &err))
        return stormpoolReportError(err);
    return stormpoolCommitVolFile(file, replace);
}


static int
stormpoolWriteRaw(virStorageVolDef *vol)
{
    g_autoptr(SpAtomicFile) file = NULL;

    if (!(file = stormpoolBeginVolFile(vol)))
        return -1;
    if (ftruncate(spAtomicFileFd(file), vol->target.capacity) < 0) {
        virReportSystemError(errno, _("cannot set size of '%s' to %llu bytes"),
                             vol->target.path, vol->target.capacity);
        return -1;
    }
    return stormpoolCommitVolFile(file, false);
}


/* The replica an instance is about to back onto must exist, made from a
 * template that has not changed since createVol named the replica. */
static int
stormpoolEnsureBackingReplica(virStoragePoolObj *pool,
                              const char *replica_path)
{
    g_autofree char *name = spReplicaTemplateName(stormpoolSecondary(pool), replica_path);
    g_autofree char *template_path = NULL;
    g_autofree char *identity = NULL;
    g_autofree char *expected = NULL;
    g_autoptr(GError) err = NULL;
    SpReplicaPolicy policy;

    if (!name)
        return 0;
    template_path = g_build_filename(stormpoolPrimary(pool), name, NULL);
    if (!(identity = spReplicaIdentity(template_path, &err)))
        return stormpoolReportError(err);
    expected = spReplicaPath(stormpoolSecondary(pool), name, identity);
    if (STRNEQ(expected, replica_path)) {
        virReportError(VIR_ERR_OPERATION_FAILED,
                       _("template '%s' changed while the instance was being created; try again"),
                       name);
        return -1;
    }
    if (stormpoolReplicaPolicy(pool, &policy) < 0)
        return -1;
    return stormpoolReplicaEnsure(template_path, replica_path, policy);
}


static int
stormpoolBuildVol(virStoragePoolObj *pool,
                  virStorageVolDef *vol,
                  unsigned int flags)
{
    virStorageSource *backing = vol->target.backingStore;

    virCheckFlags(0, -1);

    if (backing) {
        if (stormpoolEnsureBackingReplica(pool, backing->path) < 0 ||
            stormpoolWriteQcow2(vol, vol->target.capacity, backing->path,
                                virStorageFileFormatTypeToString(backing->format),
                                false) < 0)
            return -1;
        stormpoolNoteReplicaUse(pool, backing->path, +1);
        return 0;
    }
    if (vol->target.format == VIR_STORAGE_FILE_QCOW2)
        return stormpoolWriteQcow2(vol, vol->target.capacity, NULL, NULL, false);
    return stormpoolWriteRaw(vol);
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


static int
stormpoolGrowQcow2(const char *path,
                   unsigned long long capacity)
{
    g_autofree char *size = g_strdup_printf("%llu", capacity);
    const char *args[] = { "resize", "-f", "qcow2", path, size, NULL };

    return stormpoolRunQemuImg(args);
}


/* An instance cloned from an instance: the overlay file is copied as it
 * is, so the clone backs onto the same template and holds the same data. */
static int
stormpoolCloneInstance(virStorageVolDef *vol,
                       virStorageVolDef *inputvol)
{
    g_autoptr(SpAtomicFile) file = NULL;
    g_autoptr(GError) err = NULL;
    VIR_AUTOCLOSE src = -1;

    if ((src = open(inputvol->target.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        virReportSystemError(errno, _("cannot open '%s'"), inputvol->target.path);
        return -1;
    }
    if (!(file = stormpoolBeginVolFile(vol)))
        return -1;
    if (!spFileCopySparse(src, spAtomicFileFd(file), &err))
        return stormpoolReportError(err);
    if (vol->target.capacity > inputvol->target.capacity &&
        stormpoolGrowQcow2(spAtomicFileTmpPath(file), vol->target.capacity) < 0)
        return -1;
    return stormpoolCommitVolFile(file, false);
}


/* A template made from any volume: its data, flattened, in the format
 * asked for. Converting data is what qemu-img is for. */
static int
stormpoolConvertToTemplate(virStorageVolDef *vol,
                           virStorageVolDef *inputvol)
{
    g_autoptr(SpAtomicFile) file = NULL;
    g_autofree char *size = g_strdup_printf("%llu", vol->target.capacity);
    const char *informat = virStorageFileFormatTypeToString(inputvol->target.format);
    const char *outformat = virStorageFileFormatTypeToString(vol->target.format);

    if (!(file = stormpoolBeginVolFile(vol)))
        return -1;
    {
        const char *convert[] = { "convert", "-q", "-f", informat, "-O", outformat,
                                  inputvol->target.path, spAtomicFileTmpPath(file),
                                  NULL };
        const char *resize[] = { "resize", "-q", "-f", outformat,
                                 spAtomicFileTmpPath(file), size, NULL };

        if (stormpoolRunQemuImg(convert) < 0)
            return -1;
        if (vol->target.capacity > inputvol->target.capacity &&
            stormpoolRunQemuImg(resize) < 0)
            return -1;
    }
    return stormpoolCommitVolFile(file, false);
}


static int
stormpoolBuildVolFrom(virStoragePoolObj *pool,
                      virStorageVolDef *vol,
                      virStorageVolDef *inputvol,
                      unsigned int flags)
{
    virStorageSource *backing = vol->target.backingStore;
    virStorageSource *inbacking = inputvol->target.backingStore;
    g_autofree char *template = NULL;
    g_autofree char *input_template = NULL;

    virCheckFlags(0, -1);

    /* A copy of an image a guest is writing would be torn. */
    if (stormpoolCheckNoWriter(inputvol) < 0)
        return -1;

    if (!backing)
        return stormpoolConvertToTemplate(vol, inputvol);

    if (!(template = stormpoolBackingTemplateName(pool, backing->path)))
        return -1;

    /* A clone of the template itself, as an instance of it, is a fresh
     * instance: its data is the template's. */
    if (!stormpoolVolIsInstance(pool, inputvol) && STREQ(inputvol->name, template))
        return stormpoolBuildVol(pool, vol, 0);

    if (inbacking && inbacking->path)
        input_template = stormpoolBackingTemplateName(pool, inbacking->path);
    if (!input_template || STRNEQ(input_template, template)) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("cannot clone '%s' as an instance of template '%s': "
                         "it is not an instance of that template"),
                       inputvol->name, template);
        return -1;
    }
    /* The copy keeps the source's backing file, which may be an older
     * replica: the data is the same. */
    if (stormpoolCloneInstance(vol, inputvol) < 0)
        return -1;
    stormpoolNoteReplicaUse(pool, inbacking->path, +1);
    return 0;
}


/* ---- volume lifecycle ------------------------------------------------- */

static int
stormpoolRefreshVol(virStoragePoolObj *pool G_GNUC_UNUSED,
                    virStorageVolDef *vol)
{
    g_auto(SpImageInfo) info = { 0 };

    return stormpoolVolUpdateFromFile(vol, -1, &info);
}


/* Refuse to change @template while instances depend on it. */
static int
stormpoolCheckNoDependents(virStoragePoolObj *pool,
                           virStorageVolDef *template,
                           const char *action)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) names = NULL;
    g_autofree char *summary = NULL;

    if (!(names = spTemplateDependents(stormpoolSecondary(pool),
                                       template->target.path, &err)))
        return stormpoolReportError(err);
    if (names->len == 0)
        return 0;

    summary = spTemplateDependentsSummary(names, STORMPOOL_DEPENDENTS_LISTED);
    virReportError(VIR_ERR_OPERATION_INVALID,
                   _("cannot %s template '%s': %u instance(s) depend on it: %s"),
                   action, template->name, names->len, summary);
    return -1;
}


/* A replica goes with the last instance that backs onto it. Failing to
 * remove it is not an error of the deletion: refresh tries again. */
static void
stormpoolCollectReplica(virStoragePoolObj *pool,
                        const char *backing_path)
{
    const char *paths[] = { backing_path, NULL };
    g_autoptr(GPtrArray) dependents = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *name = spReplicaTemplateName(stormpoolSecondary(pool), backing_path);

    if (!name)
        return;
    if (!(dependents = spBackingDependents(stormpoolSecondary(pool), paths, &err)) ||
        dependents->len > 0 || stormpoolReplicaWanted(pool, backing_path)) {
        return;
    }
    if (!spReplicaRemove(backing_path, &err)) {
        VIR_WARN("cannot remove unused replica '%s': %s", backing_path, err->message);
        return;
    }
    VIR_INFO("removed replica '%s' of template '%s': its last instance is gone",
             backing_path, name);
}


static int
stormpoolDeleteVol(virStoragePoolObj *pool,
                   virStorageVolDef *vol,
                   unsigned int flags)
{
    VIR_AUTOCLOSE lock = -1;

    virCheckFlags(0, -1);

    if (!stormpoolVolIsInstance(pool, vol) &&
        stormpoolCheckNoDependents(pool, vol, "delete") < 0)
        return -1;
    if (virFileExists(vol->target.path) &&
        (lock = stormpoolLockNotInUse(vol, "delete")) < 0)
        return -1;

    if (unlink(vol->target.path) < 0 && errno != ENOENT) {
        virReportSystemError(errno, _("cannot delete volume '%s'"), vol->target.path);
        return -1;
    }
    if (vol->target.backingStore && vol->target.backingStore->path) {
        stormpoolCollectReplica(pool, vol->target.backingStore->path);
        stormpoolNoteReplicaUse(pool, vol->target.backingStore->path, -1);
    }
    VIR_INFO("deleted %s '%s'",
             stormpoolVolIsInstance(pool, vol) ? "instance" : "template",
             vol->target.path);
    return 0;
}


/* Wiping an instance returns it to its template's pristine state: a new,
 * empty overlay of the same size replaces the old one atomically. */
static int
stormpoolResetInstance(virStoragePoolObj *pool,
                       virStorageVolDef *vol)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *backing = NULL;
    g_autofree char *template = NULL;
    g_auto(SpImageInfo) info = { 0 };
    VIR_AUTOCLOSE lock = -1;

    if ((lock = stormpoolLockNotInUse(vol, "wipe")) < 0)
        return -1;

    /* The header, not the cached definition, says what the overlay is now. */
    if (!spImageInfoRead(vol->target.path, &info, &err))
        return stormpoolReportError(err);
    if (info.format != SP_IMAGE_FORMAT_QCOW2 || !info.backing_file) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("'%s' is no longer an overlay of a template"), vol->target.path);
        return -1;
    }
    backing = spBackingFileResolve(vol->target.path, info.backing_file);
    if (!(template = stormpoolBackingTemplateName(pool, backing))) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("'%s' backs onto '%s', which is not a template of this pool"),
                       vol->target.path, backing);
        return -1;
    }
    if (stormpoolWriteQcow2(vol, info.virtual_size, backing,
                            info.backing_format ? info.backing_format : "raw",
                            true) < 0)
        return -1;
    VIR_INFO("reset instance '%s' to template '%s'", vol->target.path, backing);
    return 0;
}


static int
stormpoolWipeVol(virStoragePoolObj *pool,
                 virStorageVolDef *vol,
                 unsigned int algorithm,
                 unsigned int flags)
{
    if (!stormpoolVolIsInstance(pool, vol)) {
        if (stormpoolCheckNoDependents(pool, vol, "wipe") < 0 ||
            stormpoolCheckNotInUse(vol, "wipe") < 0)
            return -1;
        return virStorageBackendVolWipeLocal(pool, vol, algorithm, flags);
    }

    virCheckFlags(0, -1);
    if (algorithm != VIR_STORAGE_VOL_WIPE_ALG_ZERO) {
        virReportError(VIR_ERR_ARGUMENT_UNSUPPORTED, "%s",
                       _("wiping an instance resets it to its template; "
                         "only the default 'zero' algorithm is supported"));
        return -1;
    }
    return stormpoolResetInstance(pool, vol);
}


static int
stormpoolResizeVol(virStoragePoolObj *pool,
                   virStorageVolDef *vol,
                   unsigned long long capacity,
                   unsigned int flags)
{
    virCheckFlags(VIR_STORAGE_VOL_RESIZE_DELTA |
                  VIR_STORAGE_VOL_RESIZE_SHRINK, -1);

    if (!stormpoolVolIsInstance(pool, vol) &&
        stormpoolCheckNoDependents(pool, vol, "resize") < 0)
        return -1;
    /* qemu-img takes the image locks itself, so probing is enough here. */
    if (stormpoolCheckNotInUse(vol, "resize") < 0)
        return -1;

    if (capacity < vol->target.capacity) {
        virReportError(VIR_ERR_OPERATION_UNSUPPORTED, "%s",
                       _("stormpool volumes can only grow: shrinking would discard guest data"));
        return -1;
    }
    if (vol->target.format == VIR_STORAGE_FILE_RAW) {
        if (truncate(vol->target.path, capacity) < 0) {
            virReportSystemError(errno, _("cannot resize '%s'"), vol->target.path);
            return -1;
        }
        return 0;
    }
    if (capacity > spQcow2MaxVirtualSize(SP_QCOW2_DEFAULT_CLUSTER_BITS)) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("capacity %llu is larger than the qcow2 limit"), capacity);
        return -1;
    }
    return stormpoolGrowQcow2(vol->target.path, capacity);
}


static int
stormpoolUploadVol(virStoragePoolObj *pool,
                   virStorageVolDef *vol,
                   virStreamPtr stream,
                   unsigned long long offset,
                   unsigned long long len,
                   unsigned int flags)
{
    if (stormpoolVolIsInstance(pool, vol)) {
        virReportError(VIR_ERR_OPERATION_UNSUPPORTED,
                       _("cannot upload into instance '%s': upload fills templates; "
                         "an instance's data comes from its guest"),
                       vol->name);
        return -1;
    }
    if (stormpoolCheckNoDependents(pool, vol, "upload into") < 0 ||
        stormpoolCheckNotInUse(vol, "upload into") < 0)
        return -1;
    return virStorageBackendVolUploadLocal(pool, vol, stream, offset, len, flags);
}


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
    if (virStorageBackendRegister(&virStorageBackendStormpool) < 0)
        return -1;

    return virStorageBackendNamespaceInit(VIR_STORAGE_POOL_STORMPOOL,
                                          &stormpoolXMLNamespace);
}
