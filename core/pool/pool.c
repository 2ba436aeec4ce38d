/*
 * pool.c: a stormpool pool: its tiers, settings and live status
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pool_private.h"
#include "stormpool/error.h"
#include "fs/backing_path.h"
#include "image/image_header.h"
#include "replica/template_versions.h"

static SpPool *
poolAlloc(const char *primary, const char *secondary, SpPoolNamespace *ns)
{
    SpPool *pool = g_new0(SpPool, 1);

    g_atomic_ref_count_init(&pool->refs);
    pool->primary = spTierPathNormalise(primary);
    pool->secondary = spTierPathNormalise(secondary);
    pool->ns = ns;
    g_mutex_init(&pool->status_lock);
    g_mutex_init(&pool->replicas_lock);
    g_cond_init(&pool->replicas_cond);
    g_mutex_init(&pool->uploads_lock);
    g_mutex_init(&pool->stamps_lock);
    g_mutex_init(&pool->jobs_lock);
    g_mutex_init(&pool->index_lock);
    g_mutex_init(&pool->hosts_lock);
    pool->host_claims = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    spPoolSetHost(pool, NULL, NULL);
    pool->volumes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                          (GDestroyNotify) spVolumeEntryFree);
    g_cond_init(&pool->jobs_cond);
    pool->headers = spHeaderCacheNew(SP_HEADER_CACHE_RACY_SECONDS);
    pool->in_progress = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    pool->users = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    pool->copying = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    pool->uploads = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    pool->version_uploads = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                spPoolVersionUploadFree);
    return pool;
}


SpPool *
spPoolNew(const char *primary, const char *secondary,
          SpReplicaPolicy policy, gboolean eager)
{
    SpPoolNamespace *ns = g_new0(SpPoolNamespace, 1);

    ns->have_replica = TRUE;
    ns->replica_policy = policy;
    ns->replica_eager = eager;
    return poolAlloc(primary, secondary, ns);
}


/* libvirt parsed the same elements already, but hands a namespace parser
 * only the XML; spPoolNamespaceParse reads and checks the tier paths with
 * the rest, so the element is walked once. */
SpPool *
spPoolNewFromXml(xmlNodePtr node, GError **error)
{
    g_autoptr(SpPoolNamespace) ns = NULL;
    g_autofree char *primary = NULL;
    g_autofree char *secondary = NULL;

    if (!(ns = spPoolNamespaceParse(node, &primary, &secondary, error)))
        return NULL;
    return poolAlloc(primary, secondary, g_steal_pointer(&ns));
}


SpPool *
spPoolRef(SpPool *pool)
{
    g_atomic_ref_count_inc(&pool->refs);
    return pool;
}


void
spPoolUnref(SpPool *pool)
{
    if (!pool || !g_atomic_ref_count_dec(&pool->refs))
        return;
    g_free(pool->primary);
    g_free(pool->secondary);
    spPoolNamespaceFree(pool->ns);
    spHeaderCacheFree(pool->headers);
    g_hash_table_unref(pool->in_progress);
    g_hash_table_unref(pool->users);
    g_hash_table_unref(pool->copying);
    g_hash_table_unref(pool->uploads);
    g_hash_table_unref(pool->version_uploads);
    g_mutex_clear(&pool->status_lock);
    g_mutex_clear(&pool->replicas_lock);
    g_cond_clear(&pool->replicas_cond);
    g_mutex_clear(&pool->uploads_lock);
    g_mutex_clear(&pool->stamps_lock);
    g_mutex_clear(&pool->jobs_lock);
    g_mutex_clear(&pool->index_lock);
    g_mutex_clear(&pool->hosts_lock);
    g_hash_table_unref(pool->host_claims);
    spHostRecordFree(pool->host_record);
    g_free(pool->host);
    g_free(pool->machine);
    g_hash_table_unref(pool->volumes);
    g_clear_pointer(&pool->unlisted, g_ptr_array_unref);
    g_cond_clear(&pool->jobs_cond);
    g_free(pool);
}


const char *
spPoolPrimary(const SpPool *pool)
{
    return pool->primary;
}


const char *
spPoolSecondary(const SpPool *pool)
{
    return pool->secondary;
}


/* Which replica of each template new instances get now, with its format
 * (SpReplicaStatus.format): libvirt reads a template through it when a
 * transient disk names the template itself. Read at each call, a stat()
 * and a header per template: an upload makes a new version at any time. */
static void
markCurrentReplicas(SpPool *pool)
{
    guint i;

    for (i = 0; pool->ns->replicas && i < pool->ns->replicas->len; i++) {
        SpReplicaStatus *r = g_ptr_array_index(pool->ns->replicas, i);
        g_autofree char *template_path = g_build_filename(pool->primary, r->template_name,
                                                          NULL);
        g_autofree char *current = spPoolCurrentReplica(pool, template_path, NULL);
        g_auto(SpImageInfo) info = { 0 };

        g_clear_pointer(&r->format, g_free);
        if (current && strcmp(current, r->path) == 0 && spImageInfoRead(r->path, &info, NULL))
            r->format = g_strdup(spImageFormatName(&info));
    }
}


GPtrArray *
spPoolFormatXml(SpPool *pool)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->status_lock);

    markCurrentReplicas(pool);
    return spPoolNamespaceFormat(pool->ns);
}


/* Keep pool-dumpxml's replica status current between refreshes. */
void
spPoolNoteReplicaUse(SpPool *pool, const char *backing_path, int delta)
{
    g_autofree char *name = spPoolReplicaTemplateName(pool, backing_path);
    g_autoptr(GMutexLocker) locker = NULL;
    struct stat sb;

    if (!name)
        return;
    locker = g_mutex_locker_new(&pool->status_lock);
    if (stat(backing_path, &sb) < 0)
        spPoolNamespaceRemoveReplica(pool->ns, backing_path);
    else
        spPoolNamespaceAdjustReplica(pool->ns, name, backing_path, delta, sb.st_size,
                                     (guint64) sb.st_blocks * 512);
}


/* ---- the tiers and the replica policy ------------------------------------ */

static gboolean
isDir(const char *path)
{
    struct stat sb;

    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}


gboolean
spPoolTiersExist(SpPool *pool)
{
    return isDir(pool->primary) && isDir(pool->secondary);
}


gboolean
spPoolReplicaPolicy(SpPool *pool, SpReplicaPolicy *policy, GError **error)
{
    SpReplicaPolicy wanted = spPoolNamespaceReplicaPolicy(pool->ns);
    struct stat primary, secondary;

    if (wanted == SP_REPLICA_NONE || wanted == SP_REPLICA_COPY || wanted == SP_REPLICA_HOT) {
        *policy = wanted;
        return TRUE;
    }
    if (stat(pool->primary, &primary) < 0)
        return spErrorSetErrno(error, errno, "cannot stat the primary tier '%s'", pool->primary);
    if (stat(pool->secondary, &secondary) < 0)
        return spErrorSetErrno(error, errno, "cannot stat the secondary tier '%s'",
                               pool->secondary);
    if (primary.st_dev == secondary.st_dev) {
        *policy = SP_REPLICA_LINK;
        return TRUE;
    }
    if (wanted == SP_REPLICA_LINK) {
        g_set_error(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                    "replica policy 'link' needs both tiers on one file system, "
                    "but '%s' and '%s' are on different ones; use 'copy' or 'auto'",
                    pool->primary, pool->secondary);
        return FALSE;
    }
    *policy = SP_REPLICA_COPY;
    return TRUE;
}


gboolean
spPoolCheckLayout(SpPool *pool, GError **error)
{
    return spTierLayoutValidatePaths(pool->primary, pool->secondary, error);
}


gboolean
spPoolCheck(SpPool *pool, GError **error)
{
    SpReplicaPolicy policy;

    return spTierLayoutCheck(pool->primary, pool->secondary, error) &&
           spPoolReplicaPolicy(pool, &policy, error);
}


/* ---- volume names and paths ---------------------------------------------- */

gboolean
spPoolIsInstance(SpPool *pool, const char *path)
{
    return spPathIsInDir(path, pool->secondary);
}


char *
spPoolVolumePath(SpPool *pool, const char *name, gboolean instance)
{
    return g_build_filename(instance ? pool->secondary : pool->primary, name, NULL);
}


gboolean
spPoolCheckNameFree(SpPool *pool, const char *name, GError **error)
{
    SpTier tiers[] = { SP_TIER_PRIMARY, SP_TIER_SECONDARY };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(tiers); i++) {
        const char *dir = tiers[i] == SP_TIER_PRIMARY ? pool->primary : pool->secondary;
        g_autofree char *path = g_build_filename(dir, name, NULL);
        struct stat sb;

        if (lstat(path, &sb) == 0) {
            g_set_error(error, SP_ERROR, SP_ERROR_EXISTS,
                        "a file named '%s' already exists in the %s tier '%s'",
                        name, spTierName(tiers[i]), dir);
            return FALSE;
        }
    }
    return TRUE;
}


const char *
spPoolReplicaRoot(SpPool *pool)
{
    return pool->ns->replica_tier ? pool->ns->replica_tier : pool->secondary;
}


GPtrArray *
spPoolReplicaListAll(SpPool *pool, GError **error)
{
    g_autoptr(GPtrArray) all = spReplicaList(pool->secondary, error);
    g_autoptr(GPtrArray) ram = NULL;

    if (!all || !pool->ns->replica_tier)
        return g_steal_pointer(&all);
    if (!(ram = spReplicaList(pool->ns->replica_tier, error)))
        return NULL;
    while (ram->len > 0)
        g_ptr_array_add(all, g_ptr_array_steal_index(ram, 0));
    return g_steal_pointer(&all);
}


/* Replicas made before a RAM tier was configured stay valid. */
char *
spPoolReplicaTemplateName(SpPool *pool, const char *path)
{
    char *name = spReplicaTemplateName(pool->secondary, path);

    if (!name && pool->ns->replica_tier)
        name = spReplicaTemplateName(pool->ns->replica_tier, path);
    return name;
}


/* A kept version of a template is that template, in an older version:
 * what backs onto it is one of the template's instances. */
char *
spPoolBackingTemplateName(SpPool *pool, const char *backing_path)
{
    char *name;

    if (spPathIsInDir(backing_path, pool->primary))
        return g_path_get_basename(backing_path);
    if ((name = spVersionTemplateName(pool->primary, backing_path)))
        return name;
    return spPoolReplicaTemplateName(pool, backing_path);
}


/* Whether @path names a template's own file, directly in the primary
 * tier, written through a link or ".." or not. */
static gboolean
isTemplateFile(SpPool *pool, const char *path)
{
    g_autofree char *real = NULL;
    g_autofree char *dir = NULL;

    if (spPathIsInDir(path, pool->primary))
        return TRUE;
    if (!(real = realpath(path, NULL)) || !(dir = realpath(pool->primary, NULL)))
        return FALSE;
    return spPathIsInDir(real, dir);
}


/* A copy or link replica has no backing file of its own (or the one of
 * its template, a flattened copy none); a hot replica names a kept
 * version, or, made before versions existed, the template's file. A
 * replica that cannot be read (missing from the RAM tier) is taken to
 * name it: too much protection, never too little. */
gboolean
spPoolBackingPinsTemplate(SpPool *pool, const char *backing)
{
    g_auto(SpImageInfo) info = { 0 };
    g_autofree char *below = NULL;
    g_autofree char *replica_of = NULL;

    if (spVersionIsKept(pool->primary, backing))
        return FALSE;
    if (!(replica_of = spPoolReplicaTemplateName(pool, backing)))
        return isTemplateFile(pool, backing);
    if (!spImageInfoRead(backing, &info, NULL))
        return TRUE;
    if (!info.backing_file || info.format != SP_IMAGE_FORMAT_QCOW2)
        return FALSE;
    below = spBackingFileResolve(backing, info.backing_file);
    return !spVersionIsKept(pool->primary, below) && isTemplateFile(pool, below);
}


/* The replica of a template's current contents (its identity): the one
 * new instances back onto, and the one prepare='eager' keeps ready. */
char *
spPoolCurrentReplica(SpPool *pool, const char *template_path, GError **error)
{
    g_autofree char *identity = spReplicaIdentity(template_path, error);
    g_autofree char *name = g_path_get_basename(template_path);

    if (!identity)
        return NULL;
    return spReplicaPath(spPoolReplicaRoot(pool), name, identity);
}


gboolean
spPoolReplicaWanted(SpPool *pool, const char *replica_path)
{
    g_autofree char *name = NULL;
    g_autofree char *template_path = NULL;
    g_autofree char *current = NULL;

    /* A hot replica is small and made on purpose once its hot set is
     * learned: keep it ready for the next instance, like eager copies. */
    if ((!pool->ns->replica_eager && pool->ns->replica_policy != SP_REPLICA_HOT) ||
        !(name = spPoolReplicaTemplateName(pool, replica_path)))
        return FALSE;
    template_path = g_build_filename(pool->primary, name, NULL);
    current = spPoolCurrentReplica(pool, template_path, NULL);
    return current && strcmp(current, replica_path) == 0;
}

