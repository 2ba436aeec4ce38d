/*
 * stormpool_replicas.c: making template replicas for a running pool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <config.h>

#include <sys/stat.h>

#include "internal.h"
#include "storage_conf.h"
#include "virerror.h"
#include "virfile.h"
#include "virlog.h"

#include "stormpool/atomic_file.h"
#include "stormpool/error.h"
#include "stormpool/image_header.h"
#include "stormpool/image_lock.h"
#include "stormpool/pool_namespace.h"
#include "stormpool/template_index.h"
#include "stormpool_module.h"
#include "stormpool_replicas.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

VIR_LOG_INIT("storage.storage_backend_stormpool.replicas");

/* Replica paths being made, daemon-wide: paths are unique across pools
 * since two pools cannot share a secondary tier. */
static GMutex replicasLock;
static GCond replicasCond;
static GHashTable *replicasInProgress;
/* replica path -> number of instances being built onto it right now:
 * their overlays are not committed yet, so no header tells about them. */
static GHashTable *replicasUsers;
/* Secondary tiers of stopped pools: replicas being copied there stop. */
static GHashTable *replicasStopped;
/* replica path -> CopyShare of a copy under way: what it has still to
 * write is not free for another copy into the same tier. */
static GHashTable *replicasCopying;

typedef struct {
    guint64 total;
    guint64 done;
} CopyShare;


/* Called with replicasLock held. */
static guint64
stormpoolReplicaReservedFor(const char *replica_path)
{
    g_autofree char *template_dir = g_path_get_dirname(replica_path);
    g_autofree char *root = g_path_get_dirname(template_dir);
    GHashTableIter iter;
    gpointer path, value;
    guint64 reserved = 0;

    if (!replicasCopying)
        return 0;
    g_hash_table_iter_init(&iter, replicasCopying);
    while (g_hash_table_iter_next(&iter, &path, &value)) {
        CopyShare *share = value;
        g_autofree char *other_dir = g_path_get_dirname(path);
        g_autofree char *other_root = g_path_get_dirname(other_dir);

        if (STRNEQ(root, other_root) || STREQ(path, replica_path))
            continue;
        reserved += share->total > share->done ? share->total - share->done : 0;
    }
    return reserved;
}


/* Promise @total bytes of the tier to the copy of @replica_path; returns
 * what other copies under way have still to write there. */
static guint64
stormpoolReplicaShareBegin(const char *replica_path,
                           guint64 total)
{
    CopyShare *share = g_new0(CopyShare, 1);
    guint64 reserved;

    share->total = total;
    g_mutex_lock(&replicasLock);
    if (!replicasCopying)
        replicasCopying = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    reserved = stormpoolReplicaReservedFor(replica_path);
    g_hash_table_replace(replicasCopying, g_strdup(replica_path), share);
    g_mutex_unlock(&replicasLock);
    return reserved;
}


static void
stormpoolReplicaShareProgress(const char *replica_path,
                              guint64 done)
{
    CopyShare *share;

    g_mutex_lock(&replicasLock);
    if (replicasCopying && (share = g_hash_table_lookup(replicasCopying, replica_path)))
        share->done = done;
    g_mutex_unlock(&replicasLock);
}


static void
stormpoolReplicaShareEnd(const char *replica_path)
{
    g_mutex_lock(&replicasLock);
    if (replicasCopying)
        g_hash_table_remove(replicasCopying, replica_path);
    g_mutex_unlock(&replicasLock);
}


/* Called with replicasLock held. */
static bool
stormpoolReplicaCopyingInto(const char *secondary)
{
    GHashTableIter iter;
    gpointer path;

    if (!replicasInProgress)
        return false;
    g_hash_table_iter_init(&iter, replicasInProgress);
    while (g_hash_table_iter_next(&iter, &path, NULL)) {
        g_autofree char *name = spReplicaTemplateName(secondary, path);

        if (name)
            return true;
    }
    return false;
}


/* A copy notices within one chunk (64 MiB) and removes its temporary
 * file; waiting for that lets pool-delete find the tier as the copy
 * leaves it. A flattening qemu-img cannot be stopped, hence the bound. */
#define STORMPOOL_STOP_WAIT_SECONDS 5

void
stormpoolReplicasStop(const char *secondary)
{
    gint64 deadline = g_get_monotonic_time() + STORMPOOL_STOP_WAIT_SECONDS * G_TIME_SPAN_SECOND;

    g_mutex_lock(&replicasLock);
    if (!replicasStopped)
        replicasStopped = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_hash_table_add(replicasStopped, g_strdup(secondary));
    while (stormpoolReplicaCopyingInto(secondary)) {
        if (!g_cond_wait_until(&replicasCond, &replicasLock, deadline)) {
            VIR_WARN("a replica copy into '%s' is still going on after %d s",
                     secondary, STORMPOOL_STOP_WAIT_SECONDS);
            break;
        }
    }
    g_mutex_unlock(&replicasLock);
}


void
stormpoolReplicasAllow(const char *secondary)
{
    g_mutex_lock(&replicasLock);
    if (replicasStopped)
        g_hash_table_remove(replicasStopped, secondary);
    g_mutex_unlock(&replicasLock);
}


static bool
stormpoolReplicaStopped(const char *replica_path)
{
    GHashTableIter iter;
    gpointer secondary;
    bool stopped = false;

    g_mutex_lock(&replicasLock);
    if (replicasStopped) {
        g_hash_table_iter_init(&iter, replicasStopped);
        while (!stopped && g_hash_table_iter_next(&iter, &secondary, NULL)) {
            g_autofree char *name = spReplicaTemplateName(secondary, replica_path);

            stopped = name != NULL;
        }
    }
    g_mutex_unlock(&replicasLock);
    return stopped;
}


int
stormpoolReplicaPolicy(virStoragePoolObj *pool,
                       SpReplicaPolicy *policy)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(pool);
    SpReplicaPolicy wanted = spPoolNamespaceReplicaPolicy(def->namespaceData);
    struct stat primary, secondary;

    if (wanted == SP_REPLICA_NONE || wanted == SP_REPLICA_COPY) {
        *policy = wanted;
        return 0;
    }
    if (stat(def->source.dir, &primary) < 0 || stat(def->target.path, &secondary) < 0) {
        virReportSystemError(errno, _("cannot stat the tiers of pool '%s'"), def->name);
        return -1;
    }
    if (primary.st_dev == secondary.st_dev) {
        *policy = SP_REPLICA_LINK;
        return 0;
    }
    if (wanted == SP_REPLICA_LINK) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED,
                       _("replica policy 'link' needs both tiers on one file system, "
                         "but '%s' and '%s' are on different ones; use 'copy' or 'auto'"),
                       def->source.dir, def->target.path);
        return -1;
    }
    *policy = SP_REPLICA_COPY;
    return 0;
}


/* What a flattened copy of the chain from @path down will hold at most:
 * the data of all its files. Refresh made sure the chain stays in the
 * primary tier; a chain that cannot be read counts what was read. */
#define STORMPOOL_CHAIN_MAX_DEPTH 16

static guint64
stormpoolChainAllocation(const char *path)
{
    g_autofree char *current = g_strdup(path);
    guint64 total = 0;
    int depth;

    for (depth = 0; current && depth < STORMPOOL_CHAIN_MAX_DEPTH; depth++) {
        g_auto(SpImageInfo) info = { 0 };

        if (!spImageInfoRead(current, &info, NULL))
            break;
        total += info.allocation;
        g_free(current);
        current = info.backing_file ? spBackingFileResolve(current, info.backing_file) : NULL;
    }
    return total;
}


/* A template with a backing file of its own is replicated flattened, so
 * that boot reads never leave the secondary tier. */
static int
stormpoolReplicaFlatten(const char *template_path,
                        const char *replica_path,
                        const char *format,
                        guint64 need,
                        guint64 reserved)
{
    g_autoptr(SpAtomicFile) file = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *dir = g_path_get_dirname(replica_path);

    if (g_mkdir_with_parents(dir, 0711) < 0) {
        virReportSystemError(errno, _("cannot create directory '%s'"), dir);
        return -1;
    }
    if (!spReplicaCheckRoom(replica_path, need, reserved, template_path, &err))
        return stormpoolReportError(err);
    if (!(file = spAtomicFileBegin(replica_path, 0600, &err)))
        return stormpoolReportError(err);
    if (stormpoolQemuImgConvert(template_path, format,
                                spAtomicFileTmpPath(file), "qcow2") < 0)
        return -1;
    if (!spAtomicFileCommit(file, false, &err))
        return stormpoolReportError(err);
    return 0;
}


typedef struct {
    const char *replica_path;
    guint last_decile;
} CopyProgress;


/* Long copies (a 40 GiB template takes a minute) log every tenth, and
 * stop when their pool is stopped. */
static gboolean
stormpoolReplicaProgress(guint64 done,
                         guint64 total,
                         gpointer opaque)
{
    CopyProgress *state = opaque;
    guint decile = total ? (guint) (done * 10 / total) : 10;

    stormpoolReplicaShareProgress(state->replica_path, done);
    if (stormpoolReplicaStopped(state->replica_path)) {
        VIR_INFO("replica '%s': copy stopped after %llu of %llu bytes, its pool was stopped",
                 state->replica_path, (unsigned long long) done, (unsigned long long) total);
        return FALSE;
    }
    if (decile <= state->last_decile || decile >= 10)
        return TRUE;
    state->last_decile = decile;
    VIR_INFO("replica '%s': %u%% copied (%llu of %llu bytes)", state->replica_path,
             decile * 10, (unsigned long long) done, (unsigned long long) total);
    return TRUE;
}


static int
stormpoolReplicaCopy(const char *template_path,
                     const char *replica_path,
                     SpReplicaPolicy policy,
                     guint64 need,
                     guint64 reserved)
{
    g_auto(SpImageInfo) info = { 0 };
    g_autoptr(GError) err = NULL;
    gint64 start = g_get_monotonic_time();
    CopyProgress progress = { replica_path, 0 };
    double seconds;

    if (!spImageInfoRead(template_path, &info, &err)) {
        virReportError(VIR_ERR_OPERATION_FAILED, "%s", err->message);
        return -1;
    }
    VIR_INFO("making %s replica '%s' of template '%s' (%llu bytes)",
             info.backing_file ? "flattened" : spReplicaPolicyName(policy),
             replica_path, template_path, (unsigned long long) info.file_size);

    if (info.backing_file) {
        if (stormpoolReplicaFlatten(template_path, replica_path, spImageFormatName(&info),
                                    need, reserved) < 0)
            return -1;
    } else if (!spReplicaCreate(template_path, replica_path, policy == SP_REPLICA_LINK,
                                reserved, stormpoolReplicaProgress, &progress, &err)) {
        return stormpoolReportError(err);
    }

    seconds = (g_get_monotonic_time() - start) / 1e6;
    VIR_INFO("replica '%s' made in %.3f s (%.1f MB/s)", replica_path, seconds,
             seconds > 0 ? info.file_size / 1e6 / seconds : 0.0);
    return 0;
}


/* Whether the template still is what the replica's name says it is. */
static bool
stormpoolReplicaMatchesTemplate(const char *template_path,
                                const char *replica_path)
{
    g_autofree char *identity = spReplicaIdentity(template_path, NULL);
    g_autofree char *expected = g_path_get_basename(replica_path);

    return identity && STREQ(identity, expected);
}


static int
stormpoolReplicaReportChanged(const char *template_path)
{
    virReportError(VIR_ERR_OPERATION_FAILED,
                   _("template '%s' changed while its replica was being made; try again"),
                   template_path);
    return -1;
}


/* The template is held as QEMU holds a backing file for the whole copy,
 * so neither a guest, qemu-img nor the pool's own wipe, resize, delete or
 * upload (which all check its image locks) can change it meanwhile. A
 * writer that ignores image locks (cp, dd, a vol-upload stream) is caught
 * by the template's identity, checked before and after. */
static int
stormpoolReplicaMake(const char *template_path,
                     const char *replica_path,
                     SpReplicaPolicy policy)
{
    g_autoptr(GError) err = NULL;
    VIR_AUTOCLOSE pin = -1;
    guint64 need, reserved;
    int rc;

    if (stormpoolTemplateUploading(template_path)) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot make a replica of template '%s': vol-upload is still writing it"),
                       template_path);
        return -1;
    }
    if ((pin = spImageLockReader(template_path, &err)) < 0) {
        if (err->code == SP_ERROR_IN_USE) {
            virReportError(VIR_ERR_OPERATION_INVALID,
                           _("cannot make a replica of template '%s': a running guest or "
                             "another QEMU process is writing to it"), template_path);
            return -1;
        }
        return stormpoolReportError(err);
    }
    if (!stormpoolReplicaMatchesTemplate(template_path, replica_path))
        return stormpoolReplicaReportChanged(template_path);
    /* A hard link takes no space, so it promises none. */
    need = policy == SP_REPLICA_LINK ? 0 : stormpoolChainAllocation(template_path);
    reserved = stormpoolReplicaShareBegin(replica_path, need);
    rc = stormpoolReplicaCopy(template_path, replica_path, policy, need, reserved);
    stormpoolReplicaShareEnd(replica_path);
    if (rc < 0)
        return -1;
    if (!stormpoolReplicaMatchesTemplate(template_path, replica_path)) {
        if (!spReplicaRemove(replica_path, &err))
            VIR_WARN("%s", err->message);
        return stormpoolReplicaReportChanged(template_path);
    }
    return 0;
}


/* Called with replicasLock held. */
static void
stormpoolReplicaAddUser(const char *replica_path,
                        int delta)
{
    guint users = GPOINTER_TO_UINT(g_hash_table_lookup(replicasUsers, replica_path));

    if (delta < 0 && users <= (guint) -delta)
        g_hash_table_remove(replicasUsers, replica_path);
    else
        g_hash_table_insert(replicasUsers, g_strdup(replica_path),
                            GUINT_TO_POINTER(users + delta));
}


static int
stormpoolReplicaEnsureFull(const char *template_path,
                           const char *replica_path,
                           SpReplicaPolicy policy,
                           bool users)
{
    int rc;

    g_mutex_lock(&replicasLock);
    if (!replicasInProgress) {
        replicasInProgress = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        replicasUsers = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    }
    while (g_hash_table_contains(replicasInProgress, replica_path))
        g_cond_wait(&replicasCond, &replicasLock);
    if (virFileExists(replica_path)) {
        /* Only instance builds count; a second eager job for the same
         * replica (queued twice by two refreshes) has nothing to release. */
        if (users)
            stormpoolReplicaAddUser(replica_path, 1);
        g_mutex_unlock(&replicasLock);
        return 0;
    }
    g_hash_table_add(replicasInProgress, g_strdup(replica_path));
    g_mutex_unlock(&replicasLock);

    rc = stormpoolReplicaMake(template_path, replica_path, policy);

    g_mutex_lock(&replicasLock);
    g_hash_table_remove(replicasInProgress, replica_path);
    if (rc == 0 && users)
        stormpoolReplicaAddUser(replica_path, 1);
    g_cond_broadcast(&replicasCond);
    g_mutex_unlock(&replicasLock);
    return rc;
}


void
stormpoolReplicaRelease(const char *replica_path)
{
    g_mutex_lock(&replicasLock);
    stormpoolReplicaAddUser(replica_path, -1);
    g_mutex_unlock(&replicasLock);
}


int
stormpoolReplicaEnsure(const char *template_path,
                       const char *replica_path,
                       SpReplicaPolicy policy)
{
    return stormpoolReplicaEnsureFull(template_path, replica_path, policy, true);
}


bool
stormpoolReplicaInProgress(const char *replica_path)
{
    bool ret;

    g_mutex_lock(&replicasLock);
    ret = replicasInProgress && g_hash_table_contains(replicasInProgress, replica_path);
    g_mutex_unlock(&replicasLock);
    return ret;
}


bool
stormpoolReplicaBusy(const char *replica_path)
{
    bool ret;

    g_mutex_lock(&replicasLock);
    ret = replicasInProgress &&
          (g_hash_table_contains(replicasInProgress, replica_path) ||
           g_hash_table_contains(replicasUsers, replica_path));
    g_mutex_unlock(&replicasLock);
    return ret;
}


bool
stormpoolReplicaDirBusy(const char *dir)
{
    GHashTableIter iter;
    gpointer key;
    bool busy = false;

    g_mutex_lock(&replicasLock);
    if (replicasInProgress) {
        g_hash_table_iter_init(&iter, replicasInProgress);
        while (!busy && g_hash_table_iter_next(&iter, &key, NULL)) {
            g_autofree char *parent = g_path_get_dirname(key);
            busy = STREQ(parent, dir);
        }
    }
    g_mutex_unlock(&replicasLock);
    return busy;
}


typedef struct {
    char *template_path;
    char *replica_path;
    SpReplicaPolicy policy;
} ReplicaJob;


/* One worker: preparing the replicas of many templates at once would read
 * them all from the slow tier together, the very storm the pool avoids. */
static void
stormpoolReplicaPrepareWorker(gpointer data,
                              gpointer opaque G_GNUC_UNUSED)
{
    ReplicaJob *job = data;

    /* Jobs queued for a pool that has been stopped since are dropped. */
    if (!stormpoolReplicaStopped(job->replica_path) &&
        stormpoolReplicaEnsureFull(job->template_path, job->replica_path,
                                   job->policy, false) < 0) {
        if (virGetLastErrorCode() != VIR_ERR_OPERATION_ABORTED)
            VIR_ERROR(_("cannot prepare replica of template '%s': %s"),
                      job->template_path, virGetLastErrorMessage());
        virResetLastError();
    }
    g_free(job->template_path);
    g_free(job->replica_path);
    g_free(job);
}


void
stormpoolReplicaPrepare(const char *template_path,
                        const char *replica_path,
                        SpReplicaPolicy policy)
{
    static GThreadPool *workers;
    g_autoptr(GError) err = NULL;
    ReplicaJob *job;

    if (virFileExists(replica_path) || stormpoolReplicaInProgress(replica_path))
        return;

    g_mutex_lock(&replicasLock);
    if (!workers)
        workers = g_thread_pool_new(stormpoolReplicaPrepareWorker, NULL, 1, FALSE, &err);
    g_mutex_unlock(&replicasLock);
    if (!workers) {
        VIR_WARN("cannot start preparing replicas: %s", err->message);
        return;
    }

    job = g_new0(ReplicaJob, 1);
    job->template_path = g_strdup(template_path);
    job->replica_path = g_strdup(replica_path);
    job->policy = policy;
    if (!g_thread_pool_push(workers, job, &err)) {
        VIR_WARN("cannot queue the replica of '%s': %s", template_path, err->message);
        g_free(job->template_path);
        g_free(job->replica_path);
        g_free(job);
    }
}
