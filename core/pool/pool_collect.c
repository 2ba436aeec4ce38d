/*
 * pool_collect.c: when a replica may go: its users, garbage collection,
 * and the RAM tier's cap
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <sys/stat.h>

#include "pool_private.h"
#include "stormpool/error.h"
#include "fs/image_lock.h"
#include "replica/ram_tier.h"
#include "fs/backing_path.h"

/* ---- users ------------------------------------------------------------------ */

/* What backs onto the replica as the tiers are now (pool_chains.c); and
 * a QEMU holding the replica open, or an instance being built onto it,
 * keeps it too. */
static const char *
usersReason(SpPool *pool, const char *path, GError **error)
{
    const char *paths[] = { path, NULL };
    g_autoptr(GPtrArray) dependents = NULL;
    gboolean in_use = TRUE;

    if (spPoolReplicaBusy(pool, path))
        return "an instance is being built onto it, or it is being made";
    if (!spImageInUse(path, &in_use, error))
        return "its image locks cannot be read";
    if (in_use)
        return "a QEMU process holds it";
    if (!spPoolChainsSync(pool, error) ||
        !(dependents = spPoolChainDependents(pool, paths, error)))
        return "its dependents cannot be read";
    if (dependents->len > 0)
        return "an overlay backs onto it";
    return NULL;
}


gboolean
spPoolReplicaHasUsers(SpPool *pool, const char *path)
{
    g_autoptr(GError) err = NULL;

    return usersReason(pool, path, &err) != NULL;
}


/* ---- garbage collection ---------------------------------------------------- */

gboolean
spPoolReplicaUnused(SpPool *pool, const char *path)
{
    g_autoptr(GError) err = NULL;
    const char *reason = NULL;

    if (spPoolReplicaWanted(pool, path))
        reason = "the pool keeps the current replica of its template ready";
    else
        reason = usersReason(pool, path, &err);
    if (reason)
        g_debug("keeping replica '%s': %s%s%s", path, reason, err ? ": " : "",
                err ? err->message : "");
    return !reason;
}


/* Failing to remove an unused replica is no error of the caller: refresh
 * tries again. */
void
spPoolCollectReplica(SpPool *pool, const char *path)
{
    g_autofree char *name = spPoolReplicaTemplateName(pool, path);
    guint64 claims = spPoolReplicaClaims(pool);

    if (!name || !spPoolReplicaUnused(pool, path) ||
        !spPoolReplicaRemoveIfIdle(pool, path, claims))
        return;
    g_info("removed replica '%s' of template '%s': nothing uses it any more", path, name);
}


/* ---- the RAM tier ----------------------------------------------------------- */

/* Instance builds touch a replica's atime (pool_volumes.c), so the
 * atime says when it was last built upon. */
static SpRamReplica *
ramReplica(SpPool *pool, const SpReplicaInfo *info, gboolean evict_wanted)
{
    struct stat sb;
    gint64 last_used = 0;
    gboolean kept = spPoolReplicaHasUsers(pool, info->path) ||
                    (!evict_wanted && spPoolReplicaWanted(pool, info->path));

    if (stat(info->path, &sb) == 0)
        last_used = MAX(sb.st_atime, sb.st_mtime);
    return spRamReplicaNew(info->path, info->allocation, kept ? 1 : 0, last_used);
}


gboolean
spPoolRamTierMakeRoom(SpPool *pool, guint64 need, gboolean evict_wanted, GError **error)
{
    const char *tier = pool->ns->replica_tier;
    g_autoptr(GPtrArray) infos = NULL;
    g_autoptr(GPtrArray) replicas = NULL;
    g_autoptr(GPtrArray) evicted = NULL;
    guint i;

    if (!tier)
        return TRUE;
    if (g_mkdir_with_parents(tier, 0711) < 0)
        return spErrorSetErrno(error, errno, "cannot create the replica tier '%s'", tier);
    if (!(infos = spReplicaList(tier, error)))
        return FALSE;
    replicas = g_ptr_array_new_with_free_func((GDestroyNotify) spRamReplicaFree);
    for (i = 0; i < infos->len; i++)
        g_ptr_array_add(replicas, ramReplica(pool, g_ptr_array_index(infos, i), evict_wanted));
    evicted = g_ptr_array_new_with_free_func(g_free);
    if (!spRamTierMakeRoom(tier, pool->ns->replica_cap, need, replicas, evicted, error))
        return FALSE;
    for (i = 0; i < evicted->len; i++) {
        const char *path = g_ptr_array_index(evicted, i);

        g_info("evicted unused replica '%s' from the RAM tier to make room", path);
        spPoolNoteReplicaUse(pool, path, 0);
    }
    return TRUE;
}
