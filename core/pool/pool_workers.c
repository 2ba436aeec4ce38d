/*
 * pool_workers.c: the background work of running pools
 *
 * libvirt calls a pool's callbacks with the pool object locked, and every
 * other client of that pool (virsh, virt-manager, a guest's start) waits
 * for the lock. So the callbacks only read and decide; whatever takes
 * long (replica copies, hot-set learning, rebuilds after a reboot,
 * collection, the stamps) is queued here and runs without that lock.
 *
 * One worker thread serves every pool of the daemon: two copies at once
 * would read two templates from the slow disks together, the very storm
 * the pool avoids. Jobs run in the order they were queued; each checks
 * spPoolReplicasStopped before it starts and between steps, as copies do
 * between chunks, so that a stopped pool's work is dropped.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "pool_private.h"

typedef struct {
    SpPool *pool;
    SpPoolJobFunc func;
    gpointer data;
    GDestroyNotify free_data;
} Job;


static void
jobDone(Job *job)
{
    SpPool *pool = job->pool;

    if (job->free_data)
        job->free_data(job->data);
    g_mutex_lock(&pool->jobs_lock);
    /* Tests and admins reading the log wait for this line. */
    if (--pool->jobs_pending == 0)
        g_debug("pool '%s': background work done", pool->secondary);
    g_cond_broadcast(&pool->jobs_cond);
    g_mutex_unlock(&pool->jobs_lock);
    spPoolUnref(pool);
    g_free(job);
}


static void
jobRun(gpointer data, gpointer opaque G_GNUC_UNUSED)
{
    Job *job = data;

    job->func(job->pool, job->data);
    jobDone(job);
}


static GThreadPool *
workers(void)
{
    static gsize once;
    static GThreadPool *pool;

    if (g_once_init_enter(&once)) {
        pool = g_thread_pool_new(jobRun, NULL, 1, FALSE, NULL);
        g_once_init_leave(&once, 1);
    }
    return pool;
}


void
spPoolJobQueue(SpPool *pool, SpPoolJobFunc func, gpointer data, GDestroyNotify free_data)
{
    g_mutex_lock(&pool->jobs_lock);
    pool->jobs_pending++;
    g_mutex_unlock(&pool->jobs_lock);
    spPoolJobQueueCounted(pool, func, data, free_data);
}


void
spPoolJobQueueCounted(SpPool *pool, SpPoolJobFunc func, gpointer data,
                      GDestroyNotify free_data)
{
    g_autoptr(GError) err = NULL;
    Job *job = g_new0(Job, 1);

    job->pool = spPoolRef(pool);
    job->func = func;
    job->data = data;
    job->free_data = free_data;
    /* An exclusive pool of one thread queues rather than fails. */
    if (!g_thread_pool_push(workers(), job, &err)) {
        g_warning("cannot queue background work of pool '%s': %s",
                  pool->secondary, err->message);
        jobDone(job);
    }
}


void
spPoolWaitIdle(SpPool *pool)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->jobs_lock);

    while (pool->jobs_pending > 0)
        g_cond_wait(&pool->jobs_cond, &pool->jobs_lock);
}
