/*
 * pool_refresh.c: refresh of a stormpool pool, from the files of its tiers
 *
 * Volumes, their dependents and the replicas' status are all read back
 * from the files and their headers: nothing is kept on the side that
 * could drift from what is on disk.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool/pool_private.h"
#include "util/atomic_file.h"
#include "stormpool/error.h"
#include "util/dir.h"
#include "replica/ram_tier.h"
#include "fs/backing_path.h"
#include "replica/template_stamps.h"
#include "fs/image_lock.h"
#include "fs/transient_layer.h"
#include "replica/template_replica.h"

/* ---- scanning the tiers ---------------------------------------------------- */

/* One refresh's view of the tiers, so that the checks after the scan
 * need not walk every volume again. */
typedef struct {
    SpPool *pool;
    GPtrArray *volumes;         /* of SpVolume */
    GHashTable *templates;      /* name -> SpVolume of a template (borrowed) */
    GHashTable *users;          /* backing path -> instances backing onto it */
    GHashTable *backing_seen;   /* backing path -> exists, checked once */
} Scan;


static void
scanClear(Scan *scan)
{
    g_clear_pointer(&scan->volumes, g_ptr_array_unref);
    g_clear_pointer(&scan->templates, g_hash_table_unref);
    g_clear_pointer(&scan->users, g_hash_table_unref);
    g_clear_pointer(&scan->backing_seen, g_hash_table_unref);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Scan, scanClear)


static void
warnMissingBacking(Scan *scan, const SpVolume *volume)
{
    gpointer known;
    gboolean exists;

    if (g_hash_table_lookup_extended(scan->backing_seen, volume->backing_path, NULL, &known)) {
        exists = GPOINTER_TO_INT(known);
    } else {
        exists = access(volume->backing_path, F_OK) == 0;
        g_hash_table_insert(scan->backing_seen, g_strdup(volume->backing_path),
                            GINT_TO_POINTER(exists));
    }
    if (exists)
        return;
    if (volume->role == SP_ROLE_INSTANCE)
        g_warning("instance '%s' backs onto missing template '%s'",
                  volume->path, volume->backing_path);
    else
        g_warning("layer '%s' backs onto missing image '%s'",
                  volume->path, volume->backing_path);
}


/* Instances count as users of what they back onto (replica status and
 * collection); layers are known to the index, which protects their
 * backing files. */
static void
scanOne(Scan *scan, SpTier tier, int dirfd, const char *dir, const char *name)
{
    g_autoptr(SpVolume) volume = NULL;
    g_autoptr(GError) err = NULL;
    const char *unlisted = NULL;
    const char *backing;

    /* Templates are scanned first: a name can only clash with one. */
    if (tier == SP_TIER_SECONDARY && g_hash_table_contains(scan->templates, name)) {
        g_warning("skipping '%s/%s': a volume of that name exists in the other tier", dir, name);
        return;
    }
    if (!(volume = spPoolScanFile(scan->pool, tier, dirfd, dir, name, &unlisted, &err))) {
        g_warning("skipping '%s/%s': %s", dir, name, err->message);
        return;
    }
    if (unlisted) {
        g_warning("skipping '%s/%s': not a %s of this pool, %s", dir, name,
                  tier == SP_TIER_PRIMARY ? "template" : "volume", unlisted);
        return;
    }
    if (volume->backing_path && tier == SP_TIER_SECONDARY)
        warnMissingBacking(scan, volume);
    if (tier == SP_TIER_PRIMARY) {
        g_hash_table_insert(scan->templates, volume->name, volume);
    } else if (volume->role == SP_ROLE_INSTANCE) {
        backing = volume->backing_path;
        g_hash_table_insert(scan->users, (gpointer) backing,
                            GUINT_TO_POINTER(GPOINTER_TO_UINT(g_hash_table_lookup(scan->users,
                                                                                  backing)) + 1));
    }
    g_ptr_array_add(scan->volumes, g_steal_pointer(&volume));
}


/* A crash between creating a temporary file and renaming it leaves the
 * temporary file behind; it is never a volume, so remove it. The storage
 * driver refuses a refresh while this pool builds volumes, but in a
 * primary tier shared with other hosts a temporary file may be another
 * host's volume being written: its writer's lock keeps it. */
static void
removeStaleTmpFile(int dirfd, const char *dir, const char *name)
{
    if (spAtomicFileRemoveStale(dirfd, name) == 0)
        g_warning("removed '%s/%s' left behind by an interrupted volume creation", dir, name);
    else if (errno == EBUSY)
        g_debug("kept '%s/%s': a volume being written, by another host", dir, name);
    else if (errno != ENOENT)
        g_warning("cannot remove stale temporary file '%s/%s': %s", dir, name, g_strerror(errno));
}


/* One pass over the directory: volumes, and the temporary files of
 * interrupted creations. */
static gboolean
scanTier(Scan *scan, SpTier tier, const char *dir, GError **error)
{
    g_autoptr(GDir) d = NULL;
    int dirfd;
    const char *name;

    if (!(d = spPoolTierOpen(tier, dir, &dirfd, error)))
        return FALSE;
    while ((name = g_dir_read_name(d))) {
        if (name[0] != '.')
            scanOne(scan, tier, dirfd, dir, name);
        else if (spAtomicFileIsTmpName(name))
            removeStaleTmpFile(dirfd, dir, name);
    }
    close(dirfd);
    spHeaderCacheSweep(scan->pool->headers, dir);
    return TRUE;
}


/* ---- replicas at refresh --------------------------------------------------- */

static SpReplicaStatus *
replicaStatus(const SpReplicaInfo *replica, guint dependents)
{
    SpReplicaStatus *status = g_new0(SpReplicaStatus, 1);

    status->template_name = g_strdup(replica->template_name);
    status->path = g_strdup(replica->path);
    status->dependents = dependents;
    status->size = replica->size;
    status->allocation = replica->allocation;
    return status;
}


/* A replica no instance of this refresh names, that the pool does not
 * keep ready and that nobody builds on or holds open: the worker removes
 * it after its last check (spPoolCollectReplica). */
static gboolean
replicaUnusedNow(SpPool *pool, const char *path)
{
    gboolean in_use = TRUE;

    return !spPoolReplicaWanted(pool, path) && !spPoolReplicaBusy(pool, path) &&
           spImageInUse(path, &in_use, NULL) && !in_use;
}


/* Dependents are counted from the overlays' own headers, read by this
 * refresh. Replicas nobody uses any more (their instances were deleted
 * behind libvirt's back) go to @unused, if given, for the worker to
 * remove, unless prepare='eager' wants them. */
static GPtrArray *
scanReplicas(SpPool *pool, GHashTable *users, GPtrArray *unused)
{
    g_autoptr(GPtrArray) replicas = NULL;
    g_autoptr(GError) err = NULL;
    GPtrArray *status = g_ptr_array_new_with_free_func((GDestroyNotify) spReplicaStatusFree);
    guint i;

    if (!(replicas = spPoolReplicaListAll(pool, &err))) {
        g_warning("cannot list replicas: %s", err->message);
        return status;
    }
    for (i = 0; i < replicas->len; i++) {
        SpReplicaInfo *replica = g_ptr_array_index(replicas, i);
        guint n = GPOINTER_TO_UINT(g_hash_table_lookup(users, replica->path));

        if (unused && n == 0 && replicaUnusedNow(pool, replica->path))
            g_ptr_array_add(unused, g_strdup(replica->path));
        else
            g_ptr_array_add(status, replicaStatus(replica, n));
    }
    return status;
}


static void
removeStaleTmpFiles(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *name;

    while (d && dirfd >= 0 && (name = g_dir_read_name(d))) {
        if (spAtomicFileIsTmpName(name))
            removeStaleTmpFile(dirfd, dir, name);
    }
    if (dirfd >= 0)
        close(dirfd);
}


/* Temporary files of replicas whose making was interrupted (a daemon
 * killed while it made one); a replica being made right now keeps its
 * own. */
static void
removeStaleReplicaTmpFilesIn(SpPool *pool, const char *top)
{
    g_autofree char *root = g_build_filename(top, SP_REPLICA_DIR, NULL);
    g_autoptr(GDir) d = g_dir_open(root, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *dir = g_build_filename(root, name, NULL);

        if (!spPoolReplicaDirBusy(pool, dir))
            removeStaleTmpFiles(dir);
    }
}


static void
removeStaleReplicaTmpFiles(SpPool *pool)
{
    removeStaleReplicaTmpFilesIn(pool, pool->secondary);
    if (pool->ns->replica_tier)
        removeStaleReplicaTmpFilesIn(pool, pool->ns->replica_tier);
}


static void
setRamStatus(SpPool *pool)
{
    g_autoptr(GError) err = NULL;
    guint64 used = 0;

    if (!pool->ns->replica_tier)
        return;
    if (!spRamTierUsage(pool->ns->replica_tier, &used, &err))
        g_warning("cannot read the usage of the RAM tier: %s", err->message);
    g_mutex_lock(&pool->status_lock);
    spPoolNamespaceSetRamStatus(pool->ns, used);
    g_mutex_unlock(&pool->status_lock);
}


/* The replicas and the RAM tier as pool-dumpxml shows them. */
static void
setReplicaStatus(SpPool *pool, SpReplicaPolicy policy, GHashTable *users, GPtrArray *unused)
{
    GPtrArray *status = scanReplicas(pool, users, unused);
    GPtrArray *versions = spPoolVersionsStatus(pool, users);

    g_mutex_lock(&pool->status_lock);
    spPoolNamespaceSetReplicas(pool->ns, policy, status);
    spPoolNamespaceSetVersions(pool->ns, versions);
    g_mutex_unlock(&pool->status_lock);
    setRamStatus(pool);
}


/* ---- what refresh hands to the worker ---------------------------------------- */

/* The state one refresh found, for the work that takes long. */
typedef struct {
    GPtrArray *volumes;         /* of SpVolume, shared with refresh's caller */
    GPtrArray *backings;        /* what the instances back onto, once each */
    GPtrArray *unused;          /* replicas to collect */
    GHashTable *users;          /* backing path -> instances backing onto it */
    SpReplicaPolicy policy;
    gboolean prepare;           /* eager, or hot: ready the current replicas */
} Maintenance;


static void
maintenanceFree(Maintenance *m)
{
    if (!m)
        return;
    g_ptr_array_unref(m->volumes);
    g_ptr_array_unref(m->backings);
    g_ptr_array_unref(m->unused);
    g_hash_table_unref(m->users);
    g_free(m);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Maintenance, maintenanceFree)


/* Under policy='hot' this is also where hot sets are learned. */
static void
prepareReplica(SpPool *pool, SpReplicaPolicy policy, const char *template_path)
{
    g_autofree char *identity = NULL;
    g_autofree char *replica = NULL;
    g_autoptr(GError) err = NULL;

    if (policy == SP_REPLICA_HOT && (identity = spReplicaIdentity(template_path, NULL)) &&
        !spPoolHotSetLearn(pool, template_path, identity, &err) && err)
        g_warning("cannot learn the hot set of '%s': %s", template_path, err->message);
    replica = spPoolInstanceBacking(pool, template_path, NULL);
    if (replica && strcmp(replica, template_path) != 0)
        spPoolReplicaPrepare(pool, template_path, replica);
}


static void
prepareReplicas(SpPool *pool, GHashTable *templates)
{
    GHashTableIter iter;
    gpointer value;
    SpReplicaPolicy policy;

    if (!spPoolReplicaPolicy(pool, &policy, NULL))
        return;
    g_hash_table_iter_init(&iter, templates);
    while (g_hash_table_iter_next(&iter, NULL, &value) && !spPoolReplicasStopped(pool))
        prepareReplica(pool, policy, ((SpVolume *) value)->path);
}


/* After a host reboot the RAM tier is empty while instances still name
 * its replicas as their backing files: make them again, first of all the
 * worker's jobs, so that the guests started after the pool find them. */
static void
rebuildMissingReplica(SpPool *pool, const char *backing)
{
    g_autofree char *name = NULL;
    g_autofree char *identity = NULL;
    g_autofree char *template_path = NULL;
    g_autoptr(GError) err = NULL;

    if (!pool->ns->replica_tier || access(backing, F_OK) == 0 ||
        !(name = spReplicaTemplateName(pool->ns->replica_tier, backing)))
        return;
    /* An instance of an older version needs that version's replica. */
    identity = g_path_get_basename(backing);
    template_path = spPoolVersionSource(pool, name, identity);
    if (!spPoolReplicaRebuild(pool, template_path, backing, &err)) {
        g_warning("cannot make the missing replica '%s' of template '%s' again: %s",
                  backing, name, err->message);
        return;
    }
    g_info("made the missing replica '%s' of template '%s' again", backing, name);
}


static GHashTable *
templatesOf(GPtrArray *volumes)
{
    GHashTable *templates = g_hash_table_new(g_str_hash, g_str_equal);
    guint i;

    for (i = 0; i < volumes->len; i++) {
        SpVolume *volume = g_ptr_array_index(volumes, i);

        if (volume->tier == SP_TIER_PRIMARY)
            g_hash_table_insert(templates, volume->name, volume);
    }
    return templates;
}


static void
maintain(SpPool *pool, gpointer data G_GNUC_UNUSED)
{
    g_autoptr(Maintenance) m = NULL;
    g_autoptr(GHashTable) templates = NULL;
    gboolean newer;
    guint i;

    g_mutex_lock(&pool->jobs_lock);
    m = g_steal_pointer(&pool->maintenance);
    g_mutex_unlock(&pool->jobs_lock);
    if (!m || spPoolReplicasStopped(pool))
        return;
    /* What this host's images depend on, for the hosts it shares the
     * primary tier with, including what was made behind libvirt's back. */
    spPoolHostsUpdate(pool);
    templates = templatesOf(m->volumes);
    for (i = 0; i < m->backings->len; i++)
        rebuildMissingReplica(pool, g_ptr_array_index(m->backings, i));
    removeStaleReplicaTmpFiles(pool);
    spPoolCheckTemplateStamps(pool, m->volumes, templates);
    /* Replicas first: a version is kept while a replica of it is, and
     * hot sets while their version is. */
    for (i = 0; i < m->unused->len; i++)
        spPoolCollectReplica(pool, g_ptr_array_index(m->unused, i));
    spPoolCollectVersions(pool);
    spPoolCollectHotSets(pool);
    if (m->prepare)
        prepareReplicas(pool, templates);
    /* What this work made and removed shows without another refresh,
     * unless the pool stopped or a newer refresh will say it. */
    g_mutex_lock(&pool->jobs_lock);
    newer = pool->maintenance != NULL;
    g_mutex_unlock(&pool->jobs_lock);
    if (!newer && !spPoolReplicasStopped(pool))
        setReplicaStatus(pool, m->policy, m->users, NULL);
}


/* A refresh while the last one's work still waits replaces it: the newer
 * scan is the truer one, and the queue never grows with refreshes. */
static void
handOver(SpPool *pool, Maintenance *m)
{
    gboolean queued;

    g_mutex_lock(&pool->jobs_lock);
    queued = pool->maintenance != NULL;
    maintenanceFree(pool->maintenance);
    pool->maintenance = m;
    if (!queued)
        pool->jobs_pending++;
    /* Before the worker can say it is done (pool_workers.c): readers of
     * the log wait for that line after this one. */
    g_debug("pool '%s': refresh queued its background work", pool->secondary);
    g_mutex_unlock(&pool->jobs_lock);
    if (!queued)
        spPoolJobQueueCounted(pool, maintain, NULL, NULL);
}


static Maintenance *
maintenanceNew(Scan *scan, SpReplicaPolicy policy)
{
    Maintenance *m = g_new0(Maintenance, 1);
    GHashTableIter iter;
    gpointer key, value;

    m->volumes = g_ptr_array_ref(scan->volumes);
    m->backings = g_ptr_array_new_with_free_func(g_free);
    m->unused = g_ptr_array_new_with_free_func(g_free);
    m->users = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    m->policy = policy;
    m->prepare = (scan->pool->ns->replica_eager && policy != SP_REPLICA_NONE) ||
                 policy == SP_REPLICA_HOT;
    g_hash_table_iter_init(&iter, scan->users);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        g_ptr_array_add(m->backings, g_strdup(key));
        g_hash_table_insert(m->users, g_strdup(key), value);
    }
    return m;
}


static gboolean
refreshReplicas(Scan *scan, GError **error)
{
    SpPool *pool = scan->pool;
    SpReplicaPolicy policy;
    Maintenance *m;

    if (!spPoolReplicaPolicy(pool, &policy, error))
        return FALSE;
    m = maintenanceNew(scan, policy);
    setReplicaStatus(pool, policy, scan->users, m->unused);
    handOver(pool, m);
    return TRUE;
}


static gboolean
refreshUsage(SpPool *pool, SpTierUsage *usage, GError **error)
{
    g_autoptr(GMutexLocker) locker = NULL;
    SpTierUsage primary;

    if (!spTierUsageGet(pool->primary, &primary, error) ||
        !spTierUsageGet(pool->secondary, usage, error))
        return FALSE;
    locker = g_mutex_locker_new(&pool->status_lock);
    spPoolNamespaceSetStatus(pool->ns, SP_TIER_PRIMARY, pool->primary, &primary);
    spPoolNamespaceSetStatus(pool->ns, SP_TIER_SECONDARY, pool->secondary, usage);
    return TRUE;
}


/* Overlays of transient disks whose guests died unseen go before the scan,
 * so that they are not listed as volumes: a few lock probes, and only of
 * files named like such overlays. */
static void
removeStaleTransientLayers(SpPool *pool)
{
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;

    if (pool->ns->transient_tier)
        spTransientLayersRemoveStale(pool->ns->transient_tier, now);
    spTransientLayersRemoveStale(pool->secondary, now);
}


GPtrArray *
spPoolRefresh(SpPool *pool, SpTierUsage *usage, GError **error)
{
    g_auto(Scan) scan = { 0 };
    guint64 began = spPoolIndexGeneration(pool);

    /* A tier can vanish or turn read-only while the pool runs. */
    if (!spPoolCheck(pool, error))
        return NULL;
    removeStaleTransientLayers(pool);
    /* The storage driver refreshes the pool when an upload's stream
     * closes: a new version is published before the tiers are read. */
    spPoolVersionsSettle(pool, NULL);
    scan.pool = pool;
    scan.volumes = g_ptr_array_new_with_free_func((GDestroyNotify) spVolumeFree);
    scan.templates = g_hash_table_new(g_str_hash, g_str_equal);
    scan.users = g_hash_table_new(g_str_hash, g_str_equal);
    scan.backing_seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    /* Templates first, so that instances can be checked against them. */
    if (!scanTier(&scan, SP_TIER_PRIMARY, pool->primary, error) ||
        !scanTier(&scan, SP_TIER_SECONDARY, pool->secondary, error) ||
        !refreshReplicas(&scan, error) ||
        !refreshUsage(pool, usage, error))
        return NULL;
    spPoolIndexReplace(pool, scan.volumes, NULL, began);
    return g_steal_pointer(&scan.volumes);
}

