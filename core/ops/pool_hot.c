/*
 * pool_hot.c: hot sets learned from a copy-on-read boot, and hot replicas
 *
 * A template's hot set is learned once per identity: while it is not
 * known, new instances back directly onto the template; the admin boots
 * one of them with <driver copy_on_read='on'/>, so that QEMU copies
 * every cluster the boot reads into the instance's overlay; once that
 * guest is shut down, the overlay's allocated clusters are the hot set.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "pool/pool_private.h"
#include "stormpool/error.h"
#include "replica/hot_replica.h"
#include "image/hot_set.h"
#include "fs/image_lock.h"
#include "fs/backing_path.h"
#include "replica/template_versions.h"

char *
spPoolHotSetPath(SpPool *pool, const char *template_name, const char *identity)
{
    return g_build_filename(pool->secondary, SP_HOT_SET_DIR, template_name, identity, NULL);
}


/* The instance to learn from: of those backing directly onto the template
 * that no QEMU holds open (a guest still booting has not read everything
 * yet), the one whose overlay holds the most data, which is the one booted
 * with copy-on-read. NULL if there is none. */
static char *
learningInstance(SpPool *pool, const char *template_path, GError **error)
{
    const char *paths[] = { template_path, NULL };
    g_autoptr(GPtrArray) dependents = NULL;
    g_autofree char *best = NULL;
    guint64 best_bytes = 0;
    guint i;

    if (spPoolChainsSync(pool, error))
        dependents = spPoolChainDependents(pool, paths, error);
    for (i = 0; dependents && i < dependents->len; i++) {
        SpVolumeEntry *entry = g_ptr_array_index(dependents, i);
        g_autofree char *path = g_strdup(entry->path);
        g_auto(SpImageInfo) info = { 0 };
        gboolean in_use = TRUE;

        if (entry->role != SP_ROLE_INSTANCE ||
            !spImageInUse(path, &in_use, NULL) || in_use ||
            !spImageInfoRead(path, &info, NULL) || info.format != SP_IMAGE_FORMAT_QCOW2)
            continue;
        if (info.allocation > best_bytes) {
            best_bytes = info.allocation;
            g_free(best);
            best = g_steal_pointer(&path);
        }
    }
    return g_steal_pointer(&best);
}


/* The overlay's clusters below the template's size: an instance may have
 * been grown beyond its template. */
static SpHotSet *
learnFrom(const char *instance, guint64 virtual_size, GError **error)
{
    g_autoptr(SpHotSet) learned = spHotSetFromOverlay(instance, error);
    g_autoptr(SpHotSet) whole = spHotSetNew(virtual_size);

    if (!learned || !spHotSetAdd(whole, 0, virtual_size, error))
        return NULL;
    return spHotSetIntersect(whole, learned);
}


/* Where another host would publish the hot set of the template as it is
 * now; NULL if the template cannot be read. */
static char *
sharedHotSetPath(SpPool *pool, const char *name, const char *template_path)
{
    g_autofree char *identity = spReplicaStoreIdentity(template_path, NULL);

    if (!identity)
        return NULL;
    return g_build_filename(pool->primary, SP_HOT_SET_DIR, name, identity, NULL);
}


/* The file to read the hot set of template @name (the file @template_path:
 * the template, or a kept version of it) from: this host's own, else the
 * one another host published, else NULL. */
static char *
hotSetSource(SpPool *pool, const char *name, const char *template_path, const char *identity)
{
    g_autofree char *own = spPoolHotSetPath(pool, name, identity);
    g_autofree char *shared = NULL;

    if (access(own, F_OK) == 0)
        return g_steal_pointer(&own);
    shared = sharedHotSetPath(pool, name, template_path);
    if (shared && access(shared, F_OK) == 0)
        return g_steal_pointer(&shared);
    return NULL;
}


gboolean
spPoolHotSetKnown(SpPool *pool, const char *template_path, const char *identity)
{
    g_autofree char *name = g_path_get_basename(template_path);
    g_autofree char *source = hotSetSource(pool, name, template_path, identity);

    return source != NULL;
}


/* For the hosts sharing the primary tier: one learning boot serves all.
 * A store that cannot take it costs the others a boot each, not this
 * host its hot set. */
static void
publishHotSet(SpPool *pool, const char *template_path, const SpHotSet *set)
{
    g_autofree char *name = g_path_get_basename(template_path);
    g_autofree char *path = sharedHotSetPath(pool, name, template_path);
    g_autofree char *dir = path ? g_path_get_dirname(path) : NULL;
    g_autoptr(GError) err = NULL;

    if (!path)
        return;
    if (g_mkdir_with_parents(dir, 0755) < 0) {
        g_warning("cannot publish the hot set of template '%s': cannot create '%s': %s",
                  template_path, dir, g_strerror(errno));
        return;
    }
    if (!spHotSetSave(set, path, &err))
        g_warning("cannot publish the hot set of template '%s': %s", template_path,
                  err->message);
}


gboolean
spPoolHotSetLearn(SpPool *pool, const char *template_path, const char *identity,
                  GError **error)
{
    g_autofree char *name = g_path_get_basename(template_path);
    g_autofree char *path = spPoolHotSetPath(pool, name, identity);
    g_autofree char *instance = NULL;
    g_autofree char *dir = NULL;
    g_autoptr(SpHotSet) set = NULL;
    g_auto(SpImageInfo) info = { 0 };

    if (spPoolHotSetKnown(pool, template_path, identity))
        return TRUE;
    if (!(instance = learningInstance(pool, template_path, error)))
        return FALSE;
    if (!spImageInfoRead(template_path, &info, error) ||
        !(set = learnFrom(instance, info.virtual_size, error)))
        return FALSE;
    if (spHotSetBytes(set) == 0)
        return FALSE;
    dir = g_path_get_dirname(path);
    if (g_mkdir_with_parents(dir, 0711) < 0)
        return spErrorSetErrno(error, errno, "cannot create directory '%s'", dir);
    if (!spHotSetSave(set, path, error))
        return FALSE;
    g_info("learned the hot set of template '%s' from instance '%s': %" G_GUINT64_FORMAT
           " bytes, stored in '%s'", template_path, instance, spHotSetBytes(set), path);
    publishHotSet(pool, template_path, set);
    return TRUE;
}


/* In the RAM tier the cap counts (pool_collect.c); in the secondary tier, as for full
 * copies, the room the instances need to grow into. */
static gboolean
checkRoom(SpPool *pool, const char *template_path, const char *replica_path, guint64 need,
          guint64 reserved, gboolean evict_wanted, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(replica_path);

    if (pool->ns->replica_tier)
        return spPoolRamTierMakeRoom(pool, need + reserved, evict_wanted, error);
    if (g_mkdir_with_parents(dir, 0711) < 0)
        return spErrorSetErrno(error, errno, "cannot create directory '%s'", dir);
    return spReplicaCheckRoom(replica_path, need, reserved, template_path, error);
}


/* The hot set of template @name for its replica of @identity. One that
 * another host published is kept as this host's own too: the published
 * one goes when the template changes, and this host's kept version may
 * need it again (a RAM tier after a reboot). */
static SpHotSet *
loadHotSet(SpPool *pool, const char *name, const char *template_path, const char *identity,
           guint64 virtual_size, GError **error)
{
    g_autofree char *own = spPoolHotSetPath(pool, name, identity);
    g_autofree char *source = hotSetSource(pool, name, template_path, identity);
    g_autofree char *dir = g_path_get_dirname(own);
    g_autoptr(GError) err = NULL;
    SpHotSet *set = spHotSetLoad(source ? source : own, virtual_size, error);

    if (!set || !source || strcmp(source, own) == 0)
        return set;
    if (g_mkdir_with_parents(dir, 0711) < 0)
        g_warning("cannot keep the published hot set of template '%s': cannot create '%s': %s",
                  name, dir, g_strerror(errno));
    else if (!spHotSetSave(set, own, &err))
        g_warning("cannot keep the published hot set of template '%s': %s", name,
                  err->message);
    return set;
}


/* A hot replica names its template as its backing file: by the kept
 * version's path, which keeps its contents when a new version of the
 * template is published (pool_versions.c), not by the template's. */
gboolean
spPoolHotReplicaMake(SpPool *pool, const char *template_path, const char *replica_path,
                     guint64 reserved, gboolean evict_wanted, GError **error)
{
    g_autofree char *name = spPoolReplicaTemplateName(pool, replica_path);
    g_autofree char *identity = g_path_get_basename(replica_path);
    g_autofree char *version = NULL;
    g_auto(SpImageInfo) info = { 0 };
    g_autoptr(SpHotSet) set = NULL;
    gint64 start = g_get_monotonic_time();

    if (!name)
        name = g_path_get_basename(template_path);
    if (!(version = spVersionKeep(pool->primary, name, template_path, error)))
        return FALSE;
    template_path = version;
    if (!spImageInfoRead(template_path, &info, error))
        return FALSE;
    if (!(set = loadHotSet(pool, name, template_path, identity, info.virtual_size, error))) {
        g_prefix_error(error, "cannot make the hot replica of template '%s': ", name);
        return FALSE;
    }
    if (!checkRoom(pool, template_path, replica_path, spHotReplicaSize(set), reserved,
                   evict_wanted, error) ||
        !spHotReplicaCreate(template_path, spImageFormatName(&info), set, replica_path,
                            NULL, error))
        return FALSE;
    g_info("hot replica '%s' of template '%s' made in %.3f s (%" G_GUINT64_FORMAT
           " bytes of hot set)", replica_path, template_path,
           (g_get_monotonic_time() - start) / 1e6, spHotSetBytes(set));
    return TRUE;
}


/* ---- garbage collection ------------------------------------------------------ */

typedef char *(*IdentityOf)(const char *template_path, GError **error);

/* The hot set of a kept version stays with it: its hot replica may have
 * to be made again (a RAM tier after a reboot). */
static void
collectTemplateHotSets(SpPool *pool, const char *dir, const char *name, IdentityOf identityOf)
{
    g_autofree char *template_path = g_build_filename(pool->primary, name, NULL);
    g_autofree char *current = identityOf(template_path, NULL);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *identity;

    while (d && (identity = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, identity, NULL);
        g_autofree char *version = spVersionPath(pool->primary, name, identity);
        g_autofree char *kept = spReplicaIdentity(version, NULL);

        /* A kept version changed in place is that version no more. */
        if ((current && strcmp(identity, current) == 0) ||
            (kept && strcmp(kept, identity) == 0))
            continue;
        if (unlink(path) == 0)
            g_info("removed hot set '%s': its template changed or is gone", path);
    }
    rmdir(dir);                 /* only when empty */
}


static void
collectHotSetsIn(SpPool *pool, const char *tier, IdentityOf identityOf)
{
    g_autofree char *root = g_build_filename(tier, SP_HOT_SET_DIR, NULL);
    g_autoptr(GDir) d = g_dir_open(root, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *dir = g_build_filename(root, name, NULL);

        collectTemplateHotSets(pool, dir, name, identityOf);
    }
    rmdir(root);                /* only when empty: pool-delete needs it gone */
}


/* A hot set serves only its template's identity: a changed template is
 * learned again, and old instances keep the hot replica they have. The
 * published ones go the same way, by whichever host sees the change first:
 * the template is the same file for all. */
void
spPoolCollectHotSets(SpPool *pool)
{
    collectHotSetsIn(pool, pool->secondary, spReplicaIdentity);
    collectHotSetsIn(pool, pool->primary, spReplicaStoreIdentity);
}
