/*
 * pool_replicas.c: making template replicas for a running pool, and which
 * one a new instance backs onto
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool/pool_private.h"
#include "util/atomic_file.h"
#include "stormpool/error.h"
#include "fs/image_lock.h"
#include "image/qemu_img.h"
#include "fs/backing_path.h"
#include "replica/template_replica.h"

/* What a copy under way has still to write into the tier is not free for
 * another copy into it. */
typedef struct {
    guint64 total;
    guint64 done;
} SpCopyShare;


/* ---- promised space ------------------------------------------------------ */

/* Called with replicas_lock held. */
static guint64
reservedFor(SpPool *pool, const char *replica_path)
{
    GHashTableIter iter;
    gpointer path, value;
    guint64 reserved = 0;

    g_hash_table_iter_init(&iter, pool->copying);
    while (g_hash_table_iter_next(&iter, &path, &value)) {
        SpCopyShare *share = value;

        if (strcmp(path, replica_path) != 0 && share->total > share->done)
            reserved += share->total - share->done;
    }
    return reserved;
}


/* Promise @total bytes of the tier to the copy of @replica_path; returns
 * what other copies under way have still to write there. */
static guint64
shareBegin(SpPool *pool, const char *replica_path, guint64 total)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);
    SpCopyShare *share = g_new0(SpCopyShare, 1);
    guint64 reserved = reservedFor(pool, replica_path);

    share->total = total;
    g_hash_table_replace(pool->copying, g_strdup(replica_path), share);
    return reserved;
}


static void
shareEnd(SpPool *pool, const char *replica_path)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->replicas_lock);

    g_hash_table_remove(pool->copying, replica_path);
}


/* ---- making one replica -------------------------------------------------- */

/* A flattened copy holds at most the data of all the files of the chain.
 * Refresh made sure the chain stays in the primary tier; a chain that
 * cannot be read counts what was read. */
#define CHAIN_MAX_DEPTH 16

guint64
spPoolChainAllocation(const char *path)
{
    g_autofree char *current = g_strdup(path);
    guint64 total = 0;
    int depth;

    for (depth = 0; current && depth < CHAIN_MAX_DEPTH; depth++) {
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
static gboolean
flatten(const char *template_path, const char *replica_path, const char *format,
        guint64 need, guint64 reserved, GError **error)
{
    g_autoptr(SpAtomicFile) file = NULL;
    g_autofree char *dir = g_path_get_dirname(replica_path);

    if (g_mkdir_with_parents(dir, 0711) < 0)
        return spErrorSetErrno(error, errno, "cannot create directory '%s'", dir);
    if (!spReplicaCheckRoom(replica_path, need, reserved, template_path, error) ||
        !(file = spAtomicFileBegin(replica_path, SP_REPLICA_MODE, error)))
        return FALSE;
    return spQemuImgConvert(template_path, format, spAtomicFileTmpPath(file), "qcow2", error) &&
           spAtomicFileCommit(file, FALSE, error);
}


typedef struct {
    SpPool *pool;
    const char *replica_path;
    guint last_decile;
} CopyProgress;


/* Long copies (a 40 GiB template takes a minute) log every tenth, and
 * stop when their pool is stopped. */
static gboolean
copyProgress(guint64 done, guint64 total, gpointer opaque)
{
    CopyProgress *state = opaque;
    guint decile = total ? (guint) (done * 10 / total) : 10;
    SpCopyShare *share;

    g_mutex_lock(&state->pool->replicas_lock);
    if ((share = g_hash_table_lookup(state->pool->copying, state->replica_path)))
        share->done = done;
    g_mutex_unlock(&state->pool->replicas_lock);
    if (spPoolReplicasStopped(state->pool)) {
        g_info("replica '%s': copy stopped after %" G_GUINT64_FORMAT " of %"
               G_GUINT64_FORMAT " bytes, its pool was stopped", state->replica_path, done, total);
        return FALSE;
    }
    if (decile <= state->last_decile || decile >= 10)
        return TRUE;
    state->last_decile = decile;
    g_info("replica '%s': %u%% copied (%" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes)",
           state->replica_path, decile * 10, done, total);
    return TRUE;
}


static gboolean
copy(SpPool *pool, const char *template_path, const char *replica_path,
     SpReplicaPolicy policy, guint64 need, guint64 reserved, GError **error)
{
    g_auto(SpImageInfo) info = { 0 };
    gint64 start = g_get_monotonic_time();
    CopyProgress progress = { pool, replica_path, 0 };
    double seconds;

    if (!spImageInfoRead(template_path, &info, error))
        return FALSE;
    g_info("making %s replica '%s' of template '%s' (%" G_GUINT64_FORMAT " bytes)",
           info.backing_file ? "flattened" : spReplicaPolicyName(policy),
           replica_path, template_path, info.file_size);

    if (info.backing_file) {
        if (!flatten(template_path, replica_path, spImageFormatName(&info), need, reserved,
                     error))
            return FALSE;
    } else if (!spReplicaCreate(template_path, replica_path, policy == SP_REPLICA_LINK,
                                reserved, copyProgress, &progress, error)) {
        return FALSE;
    }
    seconds = (g_get_monotonic_time() - start) / 1e6;
    g_info("replica '%s' made in %.3f s (%.1f MB/s)", replica_path, seconds,
           seconds > 0 ? info.file_size / 1e6 / seconds : 0.0);
    return TRUE;
}


/* Whether the template still is what the replica's name says it is. */
static gboolean
matchesTemplate(const char *template_path, const char *replica_path)
{
    g_autofree char *identity = spReplicaIdentity(template_path, NULL);
    g_autofree char *expected = g_path_get_basename(replica_path);

    return identity && strcmp(identity, expected) == 0;
}


static gboolean
reportChanged(const char *template_path, GError **error)
{
    g_set_error(error, SP_ERROR, SP_ERROR_CHANGED,
                "template '%s' changed while its replica was being made; try again",
                template_path);
    return FALSE;
}


/* Hold the template as QEMU holds a backing file, so that neither a
 * guest, qemu-img nor the pool's own wipe, resize, delete or upload
 * (which all check its image locks) can change it during the copy. */
static int
pinTemplate(SpPool *pool, const char *template_path, GError **error)
{
    int pin;

    if (spPoolTemplateUploading(pool, template_path)) {
        g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                    "cannot make a replica of template '%s': vol-upload is still writing it",
                    template_path);
        return -1;
    }
    if ((pin = spImageLockReader(template_path, error)) >= 0 ||
        !g_error_matches(*error, SP_ERROR, SP_ERROR_IN_USE))
        return pin;
    g_clear_error(error);
    g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                "cannot make a replica of template '%s': a running guest or "
                "another QEMU process is writing to it", template_path);
    return -1;
}


/* Why a replica is made. A background preparation never evicts another
 * replica the pool keeps ready from the RAM tier: two eager replicas
 * that do not fit together would evict each other at every refresh. */
typedef enum {
    PURPOSE_INSTANCE,       /* an instance is built onto it: a user */
    PURPOSE_REBUILD,        /* instances name it, it is missing */
    PURPOSE_PREPARE,        /* prepare='eager', or a hot set just learned */
} Purpose;


/* What the tier must have room for, checked and promised before the
 * replica's data is written. A hard link takes no space. */
static gboolean
build(SpPool *pool, const char *template_path, const char *replica_path,
      SpReplicaPolicy policy, Purpose purpose, GError **error)
{
    gboolean evict_wanted = purpose != PURPOSE_PREPARE;
    guint64 need, reserved;
    gboolean ok;

    if (policy == SP_REPLICA_HOT) {
        reserved = shareBegin(pool, replica_path, 0);
        ok = spPoolHotReplicaMake(pool, template_path, replica_path, reserved,
                                  evict_wanted, error);
    } else {
        need = policy == SP_REPLICA_LINK ? 0 : spPoolChainAllocation(template_path);
        reserved = shareBegin(pool, replica_path, need);
        ok = spPoolRamTierMakeRoom(pool, need + reserved, evict_wanted, error) &&
             copy(pool, template_path, replica_path, policy, need, reserved, error);
    }
    shareEnd(pool, replica_path);
    return ok;
}


/* A writer that ignores image locks (cp, dd, a vol-upload stream) is
 * caught by the template's identity, checked before and after. */
static gboolean
make(SpPool *pool, const char *template_path, const char *replica_path,
     SpReplicaPolicy policy, Purpose purpose, GError **error)
{
    g_autoptr(GError) err = NULL;
    int pin;
    gboolean ok;

    if ((pin = pinTemplate(pool, template_path, error)) < 0)
        return FALSE;
    if (!matchesTemplate(template_path, replica_path)) {
        close(pin);
        return reportChanged(template_path, error);
    }
    ok = build(pool, template_path, replica_path, policy, purpose, error);
    if (ok && !matchesTemplate(template_path, replica_path)) {
        if (!spReplicaRemove(replica_path, &err))
            g_warning("%s", err->message);
        ok = reportChanged(template_path, error);
    }
    close(pin);
    return ok;
}


/* ---- one replica, once ------------------------------------------------ */

/* Concurrent callers for one replica wait in the registry for the one
 * making it (spPoolReplicaReadyOrClaim). */
static gboolean
ensure(SpPool *pool, const char *template_path, const char *replica_path,
       Purpose purpose, GError **error)
{
    gboolean user = purpose == PURPOSE_INSTANCE;
    SpReplicaPolicy policy;
    gboolean ok;

    if (spPoolReplicaReadyOrClaim(pool, replica_path, user))
        return TRUE;
    ok = spPoolReplicaPolicy(pool, &policy, error) &&
         make(pool, template_path, replica_path, policy, purpose, error);
    spPoolReplicaClaimEnd(pool, replica_path, ok && user);
    return ok;
}


gboolean
spPoolReplicaEnsure(SpPool *pool, const char *template_path,
                    const char *replica_path, GError **error)
{
    return ensure(pool, template_path, replica_path, PURPOSE_INSTANCE, error);
}


gboolean
spPoolReplicaRebuild(SpPool *pool, const char *template_path,
                     const char *replica_path, GError **error)
{
    return ensure(pool, template_path, replica_path, PURPOSE_REBUILD, error);
}


/* ---- eager preparation ------------------------------------------------- */

typedef struct {
    char *template_path;
    char *replica_path;
} ReplicaJob;


static void
replicaJobFree(gpointer data)
{
    ReplicaJob *job = data;

    g_free(job->template_path);
    g_free(job->replica_path);
    g_free(job);
}


static void
prepareJob(SpPool *pool, gpointer data)
{
    ReplicaJob *job = data;
    g_autoptr(GError) err = NULL;

    /* Jobs queued for a pool that has been stopped since are dropped. */
    if (spPoolReplicasStopped(pool))
        return;
    /* Listed at once, not at the next refresh: a transient disk on the
     * template reads through the replica pool-dumpxml lists. */
    if (ensure(pool, job->template_path, job->replica_path, PURPOSE_PREPARE, &err))
        spPoolNoteReplicaUse(pool, job->replica_path, 0);
    else if (!g_error_matches(err, SP_ERROR, SP_ERROR_CANCELLED))
        g_critical("cannot prepare replica of template '%s': %s",
                   job->template_path, err->message);
}


void
spPoolReplicaPrepare(SpPool *pool, const char *template_path, const char *replica_path)
{
    ReplicaJob *job;

    if (access(replica_path, F_OK) == 0 || spPoolReplicaBusy(pool, replica_path))
        return;
    job = g_new0(ReplicaJob, 1);
    job->template_path = g_strdup(template_path);
    job->replica_path = g_strdup(replica_path);
    spPoolJobQueue(pool, prepareJob, job, replicaJobFree);
}


/* ---- which replica an instance backs onto ---------------------------- */

/* A template whose hot set is not known yet is used directly, never
 * waiting for a copy: one of these instances is the one to learn from.
 * Only a question: learning is refresh's background work (pool_hot.c). */
char *
spPoolInstanceBacking(SpPool *pool, const char *template_path, GError **error)
{
    g_autofree char *identity = NULL;
    SpReplicaPolicy policy;

    if (!spPoolReplicaPolicy(pool, &policy, error))
        return NULL;
    if (policy == SP_REPLICA_NONE)
        return g_strdup(template_path);
    if (policy != SP_REPLICA_HOT)
        return spPoolCurrentReplica(pool, template_path, error);
    if (!(identity = spReplicaIdentity(template_path, error)))
        return NULL;
    if (spPoolHotSetKnown(pool, template_path, identity))
        return spPoolCurrentReplica(pool, template_path, error);
    return g_strdup(template_path);
}
