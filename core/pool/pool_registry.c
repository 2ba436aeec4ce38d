/*
 * pool_registry.c: the replica registry of a running pool
 *
 * What the pool knows in memory about its replicas, and nothing on disk:
 * which are being made, how many instance builds use each, and whether
 * copies may run at all. Everything above (collection, the RAM tier,
 * making replicas, refresh) asks here, so this file calls no other file
 * of the pool.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <unistd.h>

#include "pool_private.h"
#include "replica/template_replica.h"

/* ---- stopping -------------------------------------------------------------- */

/* A copy notices within one chunk (64 MiB) and removes its temporary
 * file; waiting for that lets pool-delete find the tier as the copy
 * leaves it. A flattening qemu-img cannot be stopped, hence the bound. */
#define STOP_WAIT_SECONDS 5

void
spPoolReplicasStop(SpPool *pool)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);
    gint64 deadline = g_get_monotonic_time() + STOP_WAIT_SECONDS * G_TIME_SPAN_SECOND;

    pool->stopped = TRUE;
    while (g_hash_table_size(pool->in_progress) > 0) {
        if (!g_cond_wait_until(&pool->replicas_cond, &pool->replicas_lock, deadline)) {
            g_warning("a replica copy into '%s' is still going on after %d s",
                      pool->secondary, STOP_WAIT_SECONDS);
            return;
        }
    }
}


void
spPoolReplicasAllow(SpPool *pool)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);

    pool->stopped = FALSE;
}


gboolean
spPoolReplicasStopped(SpPool *pool)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);

    return pool->stopped;
}


/* ---- who makes and who uses a replica ------------------------------------ */

/* Called with replicas_lock held. */
static void
addUser(SpPool *pool, const char *replica_path, int delta)
{
    guint users = GPOINTER_TO_UINT(g_hash_table_lookup(pool->users, replica_path));

    if (delta < 0 && users <= (guint) -delta)
        g_hash_table_remove(pool->users, replica_path);
    else
        g_hash_table_insert(pool->users, g_strdup(replica_path),
                            GUINT_TO_POINTER(users + delta));
}


gboolean
spPoolReplicaReadyOrClaim(SpPool *pool, const char *replica_path, gboolean user)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);

    while (g_hash_table_contains(pool->in_progress, replica_path))
        g_cond_wait(&pool->replicas_cond, &pool->replicas_lock);
    if (access(replica_path, F_OK) == 0) {
        /* Only instance builds count; a second eager job for the same
         * replica (queued twice by two refreshes) has nothing to release. */
        if (user) {
            addUser(pool, replica_path, 1);
            pool->claims++;
        }
        return TRUE;
    }
    g_hash_table_add(pool->in_progress, g_strdup(replica_path));
    return FALSE;
}


void
spPoolReplicaClaimEnd(SpPool *pool, const char *replica_path, gboolean user)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);

    g_hash_table_remove(pool->in_progress, replica_path);
    if (user) {
        addUser(pool, replica_path, 1);
        pool->claims++;
    }
    g_cond_broadcast(&pool->replicas_cond);
}


void
spPoolReplicaRelease(SpPool *pool, const char *replica_path)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);

    addUser(pool, replica_path, -1);
}


gboolean
spPoolReplicaBusy(SpPool *pool, const char *replica_path)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);

    return g_hash_table_contains(pool->in_progress, replica_path) ||
           g_hash_table_contains(pool->users, replica_path);
}


gboolean
spPoolReplicaDirBusy(SpPool *pool, const char *dir)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);
    GHashTableIter iter;
    gpointer key;

    g_hash_table_iter_init(&iter, pool->in_progress);
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        g_autofree char *parent = g_path_get_dirname(key);

        if (strcmp(parent, dir) == 0)
            return TRUE;
    }
    return FALSE;
}


/* ---- removal ---------------------------------------------------------------- */

guint64
spPoolReplicaClaims(SpPool *pool)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);

    return pool->claims;
}


/* Under the registry's lock, so that no build claims the replica between
 * the check and the unlink: a claim finds it gone and makes it again. */
gboolean
spPoolReplicaRemoveIfIdle(SpPool *pool, const char *replica_path, guint64 claims)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);
    g_autoptr(GError) err = NULL;

    if (pool->claims != claims ||
        g_hash_table_contains(pool->in_progress, replica_path) ||
        g_hash_table_contains(pool->users, replica_path))
        return FALSE;
    if (!spReplicaRemove(replica_path, &err)) {
        g_warning("cannot remove unused replica '%s': %s", replica_path, err->message);
        return FALSE;
    }
    return TRUE;
}
