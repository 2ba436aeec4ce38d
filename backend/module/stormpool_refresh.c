/*
 * stormpool_refresh.c: refresh of a stormpool pool, from the files of its
 *                      two tiers
 *
 * Volumes, their dependents and the replicas' status are all read back
 * from the files and their headers: nothing is kept on the side that
 * could drift from what is on disk.
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

#include "stormpool/atomic_file.h"
#include "stormpool/error.h"
#include "stormpool/file_copy.h"
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

VIR_LOG_INIT("storage.storage_backend_stormpool.refresh");


/* A crash between creating a temporary file and renaming it leaves the
 * temporary file behind; it is never a volume, so remove it. The storage
 * driver refuses a refresh while volume builds run, so none is in use. */
static void
stormpoolRemoveStaleTmpFile(int dirfd,
                            const char *dir,
                            const char *name)
{
    if (unlinkat(dirfd, name, 0) == 0)
        VIR_WARN("removed '%s/%s' left behind by an interrupted volume creation", dir, name);
    else
        VIR_WARN("cannot remove stale temporary file '%s/%s': %s", dir, name, g_strerror(errno));
}


static void
stormpoolRemoveStaleTmpFiles(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    VIR_AUTOCLOSE dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *name;

    while (d && dirfd >= 0 && (name = g_dir_read_name(d))) {
        if (spAtomicFileIsTmpName(name))
            stormpoolRemoveStaleTmpFile(dirfd, dir, name);
    }
}


/* Why @info does not describe an instance of this pool, or NULL. */
static const char *
stormpoolNotAnInstanceReason(virStoragePoolObj *pool,
                             virStorageVolDef *vol)
{
    const char *backing;
    g_autofree char *name = NULL;

    if (vol->target.format != VIR_STORAGE_FILE_QCOW2)
        return "it is not a qcow2 overlay";
    if (!vol->target.backingStore || !(backing = vol->target.backingStore->path))
        return "it has no backing file";
    if (spPathIsInDir(backing, stormpoolPrimary(pool)))
        return NULL;
    if (!(name = spReplicaTemplateName(stormpoolSecondary(pool), backing)))
        return "its backing file is neither a template nor a replica of this pool";
    return NULL;
}


/* Why a template with a backing file of its own must not be used, or
 * NULL. Its header may have been written by a guest (a raw template whose
 * guest wrote a qcow2 header), and making a replica reads the whole chain
 * as root: the chain must stay inside the primary tier, with the formats
 * written down. */
static const char *
stormpoolUnsafeTemplateReason(virStoragePoolObj *pool,
                              virStorageVolDef *vol)
{
    virStorageSource *backing = vol->target.backingStore;

    if (!backing || !backing->path)
        return NULL;
    if (!spPathIsInDir(backing->path, stormpoolPrimary(pool)))
        return "its backing file is outside the primary tier";
    if (backing->format != VIR_STORAGE_FILE_QCOW2 && backing->format != VIR_STORAGE_FILE_RAW)
        return "its header does not name the format of its backing file";
    return NULL;
}


/* What one refresh learns while it scans the tiers, so that the checks
 * after the scan need not walk every volume again. The volume definitions
 * are borrowed: the pool owns them, and keeps them while it is locked. */
typedef struct {
    GHashTable *templates;      /* name -> virStorageVolDef of a template */
    GHashTable *users;          /* backing path -> instances backing onto it */
    GHashTable *backing_seen;   /* backing path -> exists, checked once */
    gint64 add_vol_us;          /* spent in libvirt's virStoragePoolObjAddVol */
} RefreshTally;


static void
refreshTallyInit(RefreshTally *tally)
{
    tally->templates = g_hash_table_new(g_str_hash, g_str_equal);
    tally->users = g_hash_table_new(g_str_hash, g_str_equal);
    tally->backing_seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
}


static void
refreshTallyClear(RefreshTally *tally)
{
    g_clear_pointer(&tally->templates, g_hash_table_unref);
    g_clear_pointer(&tally->users, g_hash_table_unref);
    g_clear_pointer(&tally->backing_seen, g_hash_table_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(RefreshTally, refreshTallyClear);


static void
refreshTallyAdd(RefreshTally *tally,
                SpTier tier,
                virStorageVolDef *vol)
{
    const char *backing;

    if (tier == SP_TIER_PRIMARY) {
        g_hash_table_insert(tally->templates, vol->name, vol);
        return;
    }
    backing = vol->target.backingStore->path;
    g_hash_table_insert(tally->users, (gpointer) backing,
                        GUINT_TO_POINTER(GPOINTER_TO_UINT(g_hash_table_lookup(tally->users,
                                                                              backing)) + 1));
}


typedef struct {
    virStoragePoolObj *pool;
    SpTier tier;
    const char *dir;
    int dirfd;
    RefreshTally *tally;
} TierScan;


static void
stormpoolWarnMissingBacking(TierScan *scan,
                            virStorageVolDef *vol)
{
    const char *backing = vol->target.backingStore->path;
    gpointer known;
    bool exists;

    if (g_hash_table_lookup_extended(scan->tally->backing_seen, backing, NULL, &known)) {
        exists = GPOINTER_TO_INT(known);
    } else {
        exists = virFileExists(backing);
        g_hash_table_insert(scan->tally->backing_seen, g_strdup(backing), GINT_TO_POINTER(exists));
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
    g_autoptr(virStorageVolDef) vol = NULL;
    g_auto(SpImageInfo) info = { 0 };
    const char *reason;
    gint64 start;
    int added;

    /* Templates are scanned first: a name can only clash with one. */
    if (tier == SP_TIER_SECONDARY && g_hash_table_contains(scan->tally->templates, name)) {
        VIR_WARN("skipping '%s/%s': a volume of that name exists in the other tier",
                 dir, name);
        return;
    }

    vol = g_new0(virStorageVolDef, 1);
    vol->name = g_strdup(name);
    vol->target.path = g_build_filename(dir, name, NULL);
    vol->key = g_strdup(vol->target.path);

    if (stormpoolVolUpdateFromFile(vol, scan->dirfd, dir, &info) < 0) {
        VIR_WARN("skipping '%s': %s", vol->target.path, virGetLastErrorMessage());
        virResetLastError();
        return;
    }
    if (tier == SP_TIER_PRIMARY && (reason = stormpoolUnsafeTemplateReason(pool, vol))) {
        VIR_WARN("skipping template '%s': %s", vol->target.path, reason);
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

    start = g_get_monotonic_time();
    added = virStoragePoolObjAddVol(pool, vol);
    scan->tally->add_vol_us += g_get_monotonic_time() - start;
    if (added < 0) {
        VIR_WARN("cannot add volume '%s': %s", name, virGetLastErrorMessage());
        virResetLastError();
        return;
    }
    refreshTallyAdd(scan->tally, tier, g_steal_pointer(&vol));
}


/* One pass over the directory: volumes, and the temporary files of
 * interrupted creations. */
static int
stormpoolRefreshTier(virStoragePoolObj *pool,
                     SpTier tier,
                     const char *dir,
                     RefreshTally *tally)
{
    g_autoptr(GDir) d = NULL;
    g_autoptr(GError) err = NULL;
    VIR_AUTOCLOSE dirfd = -1;
    TierScan scan = { pool, tier, dir, -1, tally };
    const char *name;

    if (!(d = g_dir_open(dir, 0, &err)) ||
        (dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        virReportError(VIR_ERR_OPERATION_FAILED,
                       _("cannot read %s tier directory '%s': %s"),
                       spTierName(tier), dir, err ? err->message : g_strerror(errno));
        return -1;
    }
    scan.dirfd = dirfd;
    while ((name = g_dir_read_name(d))) {
        if (name[0] != '.')
            stormpoolRefreshOne(&scan, name);
        else if (spAtomicFileIsTmpName(name))
            stormpoolRemoveStaleTmpFile(dirfd, dir, name);
    }
    spHeaderCacheSweep(stormpoolHeaderCache(), dir);
    return 0;
}


/* ---- replicas at refresh --------------------------------------------- */

/* With prepare='eager', the replica of each template's current identity
 * is wanted even before its first instance. */
bool
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


/* Whether nothing needs the replica at @path any more. Refresh only lists
 * the overlays it accepted, so the last word is the inode-based scan of
 * every file in the tier; and a QEMU holding the replica open, or an
 * instance being built onto it, keeps it too. */
bool
stormpoolReplicaUnused(virStoragePoolObj *pool,
                       const char *path)
{
    const char *paths[] = { path, NULL };
    g_autoptr(GPtrArray) dependents = NULL;
    g_autoptr(GError) err = NULL;
    gboolean in_use = TRUE;
    const char *reason = NULL;

    if (stormpoolReplicaBusy(path))
        reason = "an instance is being built onto it, or it is being made";
    else if (stormpoolReplicaWanted(pool, path))
        reason = "prepare='eager' keeps the current replica of its template";
    else if (!spImageInUse(path, &in_use, &err) || in_use)
        reason = err ? err->message : "a QEMU process holds it";
    else if (!(dependents = spBackingDependents(stormpoolSecondary(pool), paths, &err)))
        reason = err->message;
    else if (dependents->len > 0)
        reason = "an overlay backs onto it";
    if (reason)
        VIR_DEBUG("keeping replica '%s': %s", path, reason);
    return !reason;
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
stormpoolScanReplicas(virStoragePoolObj *pool,
                      RefreshTally *tally)
{
    g_autoptr(GPtrArray) replicas = NULL;
    g_autoptr(GError) err = NULL;
    GPtrArray *status = g_ptr_array_new_with_free_func((GDestroyNotify) spReplicaStatusFree);
    guint i;

    if (!(replicas = spReplicaList(stormpoolSecondary(pool), &err))) {
        VIR_WARN("cannot list replicas: %s", err->message);
        return status;
    }

    for (i = 0; i < replicas->len; i++) {
        SpReplicaInfo *replica = g_ptr_array_index(replicas, i);
        guint n = GPOINTER_TO_UINT(g_hash_table_lookup(tally->users, replica->path));

        if (n == 0 && stormpoolReplicaUnused(pool, replica->path)) {
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


static void
stormpoolPrepareTemplateReplica(virStoragePoolObj *pool,
                                virStorageVolDef *vol,
                                SpReplicaPolicy policy)
{
    g_autofree char *identity = NULL;
    g_autofree char *replica = NULL;

    if (!(identity = spReplicaIdentity(vol->target.path, NULL)))
        return;
    replica = spReplicaPath(stormpoolSecondary(pool), vol->name, identity);
    stormpoolReplicaPrepare(vol->target.path, replica, policy);
}


/* Orders the reads and writes of the pools' template stamps files. */
static GMutex templateStampsLock;

typedef struct {
    const char *template_path;
    struct stat sb;
    bool in_place;
    GPtrArray *at_risk;
} AtRiskSearch;

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


static char *
stormpoolStampsPath(virStoragePoolObj *pool)
{
    return g_build_filename(stormpoolSecondary(pool), SP_TEMPLATE_STAMPS_FILE, NULL);
}


static GHashTable *
stormpoolLoadStamps(const char *path)
{
    g_autoptr(GError) err = NULL;
    GHashTable *stamps;

    if (!(stamps = spTemplateStampsLoad(path, &err))) {
        VIR_WARN("%s; template changes will only be seen from now on", err->message);
        stamps = spTemplateStampsNew();
    }
    return stamps;
}


static void
stormpoolSaveStamps(const char *path,
                    GHashTable *stamps)
{
    g_autoptr(GError) err = NULL;

    if (!spTemplateStampsSave(path, stamps, &err))
        VIR_WARN("%s", err->message);
}


void
stormpoolForgetTemplateStamp(virStoragePoolObj *pool,
                             const char *path)
{
    g_autofree char *stamps_path = stormpoolStampsPath(pool);
    g_autofree char *name = g_path_get_basename(path);
    g_autoptr(GHashTable) stamps = NULL;

    g_mutex_lock(&templateStampsLock);
    stamps = stormpoolLoadStamps(stamps_path);
    if (g_hash_table_remove(stamps, name))
        stormpoolSaveStamps(stamps_path, stamps);
    g_mutex_unlock(&templateStampsLock);
}


/* Compare every template with its stamp from the last refresh (possibly
 * made by an earlier run of the daemon), and keep the new stamps. */
static GPtrArray *
stormpoolCollectChangedTemplates(virStoragePoolObj *pool,
                                 RefreshTally *tally)
{
    GPtrArray *changed = g_ptr_array_new_with_free_func((GDestroyNotify) changedTemplateFree);
    g_autofree char *stamps_path = stormpoolStampsPath(pool);
    g_autoptr(GHashTable) before = NULL;
    g_autoptr(GHashTable) now = spTemplateStampsNew();
    GHashTableIter iter;
    gpointer key, value;

    g_mutex_lock(&templateStampsLock);
    before = stormpoolLoadStamps(stamps_path);
    g_hash_table_iter_init(&iter, tally->templates);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        virStorageVolDef *vol = value;
        SpTemplateStamp stamp;
        const SpTemplateStamp *old;
        ChangedTemplate *change;
        struct stat sb;

        /* An upload changes the template until it ends: stamped then. */
        if (stormpoolTemplateUploading(vol->target.path) || stat(vol->target.path, &sb) < 0)
            continue;
        spTemplateStampFromStat(&stamp, &sb);
        spTemplateStampsSet(now, key, &stamp);
        if (!(old = g_hash_table_lookup(before, key)) || spTemplateStampEqual(old, &stamp))
            continue;
        change = g_new0(ChangedTemplate, 1);
        change->path = g_strdup(vol->target.path);
        change->sb = sb;
        change->in_place = spTemplateStampSameInode(old, &stamp);
        g_ptr_array_add(changed, change);
    }
    if (!spTemplateStampsEqual(before, now))
        stormpoolSaveStamps(stamps_path, now);
    g_mutex_unlock(&templateStampsLock);
    return changed;
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


/* Only a changed template makes refresh look at every instance again. */
static void
stormpoolCheckTemplateStamps(virStoragePoolObj *pool,
                             RefreshTally *tally)
{
    g_autoptr(GPtrArray) changed = stormpoolCollectChangedTemplates(pool, tally);
    guint i;

    for (i = 0; i < changed->len; i++)
        stormpoolReportAtRisk(pool, g_ptr_array_index(changed, i));
}


static int
stormpoolRefreshReplicas(virStoragePoolObj *pool,
                         RefreshTally *tally)
{
    SpPoolNamespace *ns = virStoragePoolObjGetDef(pool)->namespaceData;
    SpReplicaPolicy policy;
    GHashTableIter iter;
    gpointer vol;

    if (stormpoolReplicaPolicy(pool, &policy) < 0)
        return -1;
    stormpoolRemoveStaleReplicaTmpFiles(pool);
    stormpoolCheckTemplateStamps(pool, tally);
    if (ns && ns->replica_eager && policy != SP_REPLICA_NONE) {
        g_hash_table_iter_init(&iter, tally->templates);
        while (g_hash_table_iter_next(&iter, NULL, &vol))
            stormpoolPrepareTemplateReplica(pool, vol, policy);
    }
    if (ns) {
        GPtrArray *status = stormpoolScanReplicas(pool, tally);

        stormpoolStatusLock();
        spPoolNamespaceSetReplicas(ns, policy, status);
        stormpoolStatusUnlock();
    }
    return 0;
}


/* Keep pool-dumpxml's replica status current between refreshes: @delta
 * instances more or fewer back onto @backing_path, if it is a replica. */
void
stormpoolNoteReplicaUse(virStoragePoolObj *pool,
                        const char *backing_path,
                        int delta)
{
    SpPoolNamespace *ns = virStoragePoolObjGetDef(pool)->namespaceData;
    g_autofree char *name = spReplicaTemplateName(stormpoolSecondary(pool), backing_path);
    struct stat sb;

    if (!ns || !name)
        return;
    stormpoolStatusLock();
    if (stat(backing_path, &sb) < 0)
        spPoolNamespaceRemoveReplica(ns, backing_path);
    else
        spPoolNamespaceAdjustReplica(ns, name, backing_path, delta, sb.st_size,
                                     (guint64) sb.st_blocks * 512);
    stormpoolStatusUnlock();
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
        stormpoolStatusLock();
        spPoolNamespaceSetStatus(ns, SP_TIER_PRIMARY, def->source.dir, &primary);
        spPoolNamespaceSetStatus(ns, SP_TIER_SECONDARY, def->target.path, &secondary);
        stormpoolStatusUnlock();
    }
    return 0;
}


int
stormpoolRefreshPool(virStoragePoolObj *pool)
{
    g_auto(RefreshTally) tally = { 0 };
    gint64 start = g_get_monotonic_time();

    /* A tier can vanish or turn read-only while the pool runs. */
    if (stormpoolStartPool(pool) < 0)
        return -1;

    refreshTallyInit(&tally);
    /* Templates first, so that instances can be checked against them. */
    if (stormpoolRefreshTier(pool, SP_TIER_PRIMARY, stormpoolPrimary(pool), &tally) < 0 ||
        stormpoolRefreshTier(pool, SP_TIER_SECONDARY, stormpoolSecondary(pool), &tally) < 0)
        return -1;

    if (stormpoolRefreshReplicas(pool, &tally) < 0)
        return -1;

    if (stormpoolRefreshUsage(pool) < 0)
        return -1;
    /* The split tells how much of a refresh is libvirt's own bookkeeping
     * of the volume list (make bench-create reads it). */
    VIR_INFO("refreshed stormpool pool '%s': %zu volumes in %.3f ms, of which %.3f ms "
             "in virStoragePoolObjAddVol",
             virStoragePoolObjGetDef(pool)->name, virStoragePoolObjGetVolumesCount(pool),
             (g_get_monotonic_time() - start) / 1000.0, tally.add_vol_us / 1000.0);
    return 0;
}
