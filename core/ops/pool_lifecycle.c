/*
 * pool_lifecycle.c: pool-start, pool-destroy and pool-delete
 *
 * The entry points that change the pool as a whole; refresh has a file
 * of its own (pool_refresh.c).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "pool/pool_private.h"
#include "stormpool/error.h"
#include "fs/host_records.h"
#include "replica/template_stamps.h"

/* Only a real start lets replica copies into the tier run again: libvirt
 * also refreshes a pool that was destroyed meanwhile (after an upload). */
gboolean
spPoolStart(SpPool *pool, GError **error)
{
    const char *tier = pool->ns->replica_tier;
    const char *transient = pool->ns->transient_tier;

    if (!spPoolCheck(pool, error) || !spPoolHostsCheckName(pool, error))
        return FALSE;
    /* A tmpfs is empty after a host reboot: its directory too. */
    if (tier && g_mkdir_with_parents(tier, 0711) < 0)
        return spErrorSetErrno(error, errno, "cannot create the replica tier '%s'", tier);
    /* libvirt creates the overlays there, then hands them to QEMU's user */
    if (transient && g_mkdir_with_parents(transient, 0755) < 0)
        return spErrorSetErrno(error, errno, "cannot create the transient tier '%s'",
                               transient);
    spPoolReplicasAllow(pool);
    return TRUE;
}


void
spPoolStop(SpPool *pool)
{
    g_autoptr(GMutexLocker) locker = NULL;

    /* A copy into a stopped pool would go on for minutes behind the
     * admin's back, and keep pool-delete from removing the tier. */
    spPoolReplicasStop(pool);
    locker = g_mutex_locker_new(&pool->status_lock);
    spPoolNamespaceClearStatus(pool->ns);
}


static gboolean
removeTier(SpTier tier, const char *path, GError **error)
{
    if (rmdir(path) < 0 && errno != ENOENT)
        return spErrorSetErrno(error, errno, "cannot remove the %s tier directory '%s'",
                               spTierName(tier), path);
    return TRUE;
}


/* The RAM tiers hold only replicas and overlays; pool-start made them. An
 * overlay of a running guest keeps its tier, as a volume keeps its own. */
static gboolean
removeRamTier(const char *what, const char *tier, GError **error)
{
    if (tier && rmdir(tier) < 0 && errno != ENOENT)
        return spErrorSetErrno(error, errno, "cannot remove the %s tier directory '%s'",
                               what, tier);
    return TRUE;
}


/* The hosts directory of the primary tier, when no other pool has a
 * record there: a template store other hosts use is not this pool's to
 * delete. */
static gboolean
removeHostsDir(SpPool *pool, GError **error)
{
    g_autofree char *own = spHostRecordId(pool->host, pool->secondary);
    g_autoptr(GPtrArray) ids = NULL;
    guint i;

    if (!(ids = spHostRecordList(pool->primary, error)))
        return FALSE;
    for (i = 0; i < ids->len; i++) {
        if (strcmp(g_ptr_array_index(ids, i), own) == 0)
            continue;
        g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                    "cannot delete the primary tier '%s': another pool shares it "
                    "(its record is %s/%s)", pool->primary, SP_HOSTS_DIR,
                    (char *) g_ptr_array_index(ids, i));
        return FALSE;
    }
    return spHostsRemoveDir(pool->primary, own, error);
}


gboolean
spPoolDeleteTiers(SpPool *pool, GError **error)
{
    g_autofree char *stamps = g_build_filename(pool->secondary, SP_TEMPLATE_STAMPS_FILE, NULL);

    /* Work a refresh handed on may still run after pool-destroy (a stopped
     * pool's jobs end at their next check): it rewrites this host's record,
     * the stamps and the hot sets, which must not come back under the
     * removal. */
    spPoolWaitIdle(pool);
    /* Hot sets of templates that are gone, the published ones too. */
    spPoolCollectHotSets(pool);
    /* The pool's own bookkeeping file is no volume; it goes first. */
    if (unlink(stamps) < 0 && errno != ENOENT)
        return spErrorSetErrno(error, errno, "cannot remove '%s'", stamps);
    /* Like a dir pool: rmdir refuses directories that still hold files,
     * so pool-delete never destroys a template or an instance. */
    if (!removeRamTier("replica", pool->ns->replica_tier, error) ||
        !removeRamTier("transient", pool->ns->transient_tier, error) ||
        !removeTier(SP_TIER_SECONDARY, pool->secondary, error))
        return FALSE;
    return removeHostsDir(pool, error) && removeTier(SP_TIER_PRIMARY, pool->primary, error);
}
