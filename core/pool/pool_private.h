/*
 * pool_private.h: what the files of the SpPool object share
 *
 * The files are layers: each calls only the files below it, so that it
 * can be read, and changed, knowing only what it stands on. The files
 * down to pool_hot.c are in core/ops (what libvirt's callbacks ask of
 * the pool), the others in core/pool (what the pool is and knows).
 *
 *   pool_lifecycle.c pool_refresh.c  libvirt's callbacks: start, stop,
 *   pool_volumes.c pool_plan.c       delete, refresh, volume changes,
 *                                    what a new volume will be
 *   pool_versions.c                  new versions of templates uploaded
 *                                    while instances depend on them, and
 *                                    the kept versions they need
 *   pool_replicas.c                  making replicas; which one a new
 *                                    instance backs onto
 *   pool_hot.c                       hot sets, hot replicas
 *   pool_collect.c pool_checks.c     when a replica may go, the RAM
 *   pool_stamps.c                    tier's cap; checks before a change;
 *                                    templates changed behind libvirt's back
 *   pool_hosts.c                     what other hosts sharing the primary
 *                                    tier depend on, and this host's record
 *   pool_chains.c                    every file of the tiers, its role and
 *                                    what depends on it, whoever made it
 *   pool_registry.c pool_uploads.c   what a running pool keeps in memory:
 *   pool_workers.c pool_index.c      replicas being made and used,
 *                                    uploads under way, background jobs,
 *                                    the volumes it lists
 *   pool.c                           the object: its tiers, settings,
 *                                    paths and live status
 *
 * Files on one line call nothing of each other.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "fs/host_records.h"
#include "fs/tier_layout.h"
#include "image/header_cache.h"
#include "image/image_header.h"
#include "pool/pool_namespace.h"
#include "replica/template_replica.h"
#include "stormpool/pool.h"

struct _SpPool {
    gatomicrefcount refs;
    char *primary;
    char *secondary;

    /* Configuration from the XML, and the live status refresh fills in;
     * volume builds change the status without libvirt's pool lock. */
    GMutex status_lock;
    SpPoolNamespace *ns;

    /* Headers refresh has read, reused while the files are unchanged. */
    SpHeaderCache *headers;

    /* The replica registry, keyed by replica path. */
    GMutex replicas_lock;
    GCond replicas_cond;
    GHashTable *in_progress;    /* replicas being made */
    GHashTable *users;          /* -> instances being built onto it (guint) */
    GHashTable *copying;        /* -> SpCopyShare of a copy under way */
    gboolean stopped;           /* copies stop, queued ones are dropped */
    guint64 claims;             /* instance builds that claimed a replica */

    /* Background jobs queued and not finished (pool_workers.c). */
    GMutex jobs_lock;
    GCond jobs_cond;
    guint jobs_pending;

    /* The work the last refresh left to the workers, while queued. */
    gpointer maintenance;

    /* The volumes libvirt lists: name -> SpVolumeEntry; and the images of
     * the tiers it cannot list (named like a volume of the other tier),
     * which still protect what they back onto (of SpVolumeEntry). */
    GMutex index_lock;
    GHashTable *volumes;
    GPtrArray *unlisted;
    guint64 index_generation;   /* counts the pool's own changes */

    /* vol-upload streams under way, keyed by the path they write; the
     * uploads of new versions, template name -> upload file. */
    GMutex uploads_lock;
    GHashTable *uploads;
    GHashTable *version_uploads;

    /* Orders the reads and writes of the template stamps file. */
    GMutex stamps_lock;

    /* This host, as other hosts sharing the primary tier know it; the
     * lock orders the writes of its record there. */
    char *host;
    char *machine;
    GMutex hosts_lock;
    GHashTable *host_claims;    /* template name -> instances being written */
    SpHostRecord *host_record;  /* what was published last, or NULL */
};

/* ---- pool.c ------------------------------------------------------------- */

/* Where new replica files go: the RAM tier if the pool has one, else the
 * secondary tier (both hold SP_REPLICA_DIR). */
const char *spPoolReplicaRoot(SpPool *pool);

/* Every complete replica of the pool, in both roots. */
GPtrArray *spPoolReplicaListAll(SpPool *pool, GError **error);

/* The replica of a template's current identity (a path; it may not
 * exist yet). */
char *spPoolCurrentReplica(SpPool *pool, const char *template_path, GError **error);

/* Whether the pool keeps the replica at @replica_path ready for new
 * instances (prepare='eager', or a hot replica). */
gboolean spPoolReplicaWanted(SpPool *pool, const char *replica_path);

/* Whether an image backing onto @backing reads a template's own file
 * by its path (the template itself, or a hot replica made on it before
 * versions existed) rather than a replica or a kept version: a new
 * version of the template would change what it reads. */
gboolean spPoolBackingPinsTemplate(SpPool *pool, const char *backing);

/* Keep pool-dumpxml's replica status current between refreshes: @delta
 * instances more or fewer back onto @backing_path, if it is a replica. */
void spPoolNoteReplicaUse(SpPool *pool, const char *backing_path, int delta);

/* ---- pool_registry.c: the replica registry, in memory ------------------ */

/* Stop the copies into the pool, waiting a little for them to clean up;
 * let them run again; whether they are stopped. */
void spPoolReplicasStop(SpPool *pool);
void spPoolReplicasAllow(SpPool *pool);
gboolean spPoolReplicasStopped(SpPool *pool);

/* Wait until nobody makes @replica_path; whether it exists then (a
 * caller that is a @user of it is counted as one). When it does not, the
 * caller is registered as the one making it, and must end that with
 * spPoolReplicaClaimEnd(), counted as a user of it if @user. */
gboolean spPoolReplicaReadyOrClaim(SpPool *pool, const char *replica_path, gboolean user);
void spPoolReplicaClaimEnd(SpPool *pool, const char *replica_path, gboolean user);

/* One instance build fewer uses the replica. */
void spPoolReplicaRelease(SpPool *pool, const char *replica_path);

/* Whether the replica at @replica_path is being made or built upon. */
gboolean spPoolReplicaBusy(SpPool *pool, const char *replica_path);

/* Whether a replica inside directory @dir is being made right now. */
gboolean spPoolReplicaDirBusy(SpPool *pool, const char *dir);

/* Remove the replica at @replica_path unless it is busy, or an instance
 * build has claimed any replica since spPoolReplicaClaims() returned
 * @claims: a build that began after a caller counted the replica's users
 * might back onto it. Whether it was removed; errors go to the log. */
guint64 spPoolReplicaClaims(SpPool *pool);
gboolean spPoolReplicaRemoveIfIdle(SpPool *pool, const char *replica_path, guint64 claims);

/* ---- pool_index.c: the volumes the pool lists, in memory -------------- */

typedef struct {
    char *name;
    char *path;
    SpTier tier;
    SpVolumeRole role;
    SpImageFormat format;
    guint64 capacity;
    char *backing_path;         /* the resolved backing file, or NULL */
    gboolean building;          /* planned, not written yet */
    guint64 changed;            /* index generation of the pool's last change */
} SpVolumeEntry;

void spVolumeEntryFree(SpVolumeEntry *entry);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SpVolumeEntry, spVolumeEntryFree)

/* What a scan of the tiers found (of SpVolume), instead of what was
 * known; with @unlisted (of SpVolume, or NULL to keep what is known), the
 * images that cannot be listed. Volumes the pool changed since
 * spPoolIndexGeneration() returned @scan_began, before the scan, stay as
 * the pool left them. */
guint64 spPoolIndexGeneration(SpPool *pool);
void spPoolIndexReplace(SpPool *pool, GPtrArray *volumes, GPtrArray *unlisted,
                        guint64 scan_began);
/* A volume read again (vol-refresh, resize). */
void spPoolIndexUpdate(SpPool *pool, const SpVolume *volume);
/* A volume planned by vol-create (@entry->building), then written. */
void spPoolIndexAdd(SpPool *pool, const SpVolumeEntry *entry);
void spPoolIndexBuilt(SpPool *pool, const char *name, gboolean ok);
void spPoolIndexRemove(SpPool *pool, const char *name);
/* A copy of the volume named @spec (a name, or its path), or NULL. */
SpVolumeEntry *spPoolIndexLookup(SpPool *pool, const char *spec);
/* A copy of every image known, listed or not (of SpVolumeEntry). */
GPtrArray *spPoolIndexEntries(SpPool *pool);

/* ---- pool_chains.c: every chain in the tiers, whoever made it ---------- */

const char *spVolumeRoleName(SpVolumeRole role);

/* Set @volume's role from its tier and backing file; why it is no volume
 * of the pool, or NULL. */
const char *spPoolVolumeClassify(SpPool *pool, SpVolume *volume);

/* The image in file @name of @dir (open on @dirfd), its header read
 * through the pool's header cache, or NULL and why it is none (not an
 * image stormpool handles). *@unlisted says why the pool does not list
 * it, or NULL. */
SpVolume *spPoolScanFile(SpPool *pool, SpTier tier, int dirfd, const char *dir,
                         const char *name, const char **unlisted, GError **error);

/* Open a tier's directory to list it; *@dirfd, for reading its files, is
 * the caller's to close. */
GDir *spPoolTierOpen(SpTier tier, const char *dir, int *dirfd, GError **error);

/* Bring the index up to date with the tiers before a change that could
 * take a file away from what depends on it: a stat of each file, a header
 * read of the files changed since they were read last. */
gboolean spPoolChainsSync(SpPool *pool, GError **error);

/* The volumes of the index (copies of SpVolumeEntry, by name) whose
 * backing file is one of the files @paths (NULL-terminated) name. */
GPtrArray *spPoolChainDependents(SpPool *pool, const char *const *paths, GError **error);

/* The name of the template the backing file @backing is, or is a replica
 * of, or NULL. */
char *spPoolTemplateOf(SpPool *pool, const char *backing);

/* ---- pool_workers.c: background work, off libvirt's pool lock ---------- */

typedef void (*SpPoolJobFunc)(SpPool *pool, gpointer data);

/* Run @func(@pool, @data) on the daemon's worker thread, then @free_data
 * (@data). @func checks spPoolReplicasStopped: a stopped pool's jobs
 * still run, to let go of what they hold. */
void spPoolJobQueue(SpPool *pool, SpPoolJobFunc func, gpointer data,
                    GDestroyNotify free_data);

/* The same, for a caller that already counted the job in jobs_pending,
 * under jobs_lock, so that nothing it logged there can come after the
 * job's end. */
void spPoolJobQueueCounted(SpPool *pool, SpPoolJobFunc func, gpointer data,
                           GDestroyNotify free_data);

/* ---- pool_uploads.c: vol-upload streams under way, in memory ----------- */

/* A vol-upload into the template at @path: its stream is being opened,
 * or (@open) is open and writes until the daemon closes it. */
void spPoolUploadSet(SpPool *pool, const char *path, gboolean open);
gboolean spPoolTemplateUploading(SpPool *pool, const char *path);

/* The upload of a new version of the template @name goes to @path, whose
 * image locks the descriptor @lock holds until the upload is taken; at
 * most one per template. spPoolVersionUploadOf gives it (or NULL), and
 * spPoolVersionUploadTake removes it, TRUE for the one caller that did. */
void spPoolVersionUploadSet(SpPool *pool, const char *name, const char *path, int lock);
void spPoolVersionUploadFree(gpointer upload);
char *spPoolVersionUploadOf(SpPool *pool, const char *name);
gboolean spPoolVersionUploadTake(SpPool *pool, const char *name);
/* The templates with a version upload registered. */
GPtrArray *spPoolVersionUploadNames(SpPool *pool);

/* ---- pool_stamps.c: templates changed behind libvirt's back ------------- */

/* The pool changed the template at @path itself: the next refresh must
 * not report it as changed behind libvirt's back. */
void spPoolForgetTemplateStamp(SpPool *pool, const char *path);

/* Report the templates of @templates (name -> SpVolume) that changed
 * since the last refresh, naming the instances of @volumes whose data is
 * at risk. */
void spPoolCheckTemplateStamps(SpPool *pool, GPtrArray *volumes, GHashTable *templates);

/* ---- pool_hosts.c: hosts sharing the primary tier ---------------------- */

/* How long a host waits for another to let go of the template store. */
#define SP_HOSTS_LOCK_TIMEOUT_MS 30000

/* Name this host (and its machine id) as other hosts see it; the pool
 * starts with the system's host name and /etc/machine-id. */
void spPoolSetHost(SpPool *pool, const char *host, const char *machine);

/* Write this host's record: how many of its images depend on each
 * template, the volumes being built included. */
gboolean spPoolHostsPublish(SpPool *pool, GError **error);

/* The same after a change of this host's images: a record that could not
 * be rewritten counts too many, which protects too much, never too
 * little; the log says so, and the next refresh writes it again. */
void spPoolHostsUpdate(SpPool *pool);

/* Before an instance of the template @name is written (it is planned in
 * the index): under the store's shared lock, the template is still there
 * and this host's record counts the instance, so that no host can take
 * the template away in between. */
gboolean spPoolHostsClaim(SpPool *pool, const char *name, GError **error);
/* The instance claimed is @written, or will never be: the record counts
 * its file from now on, or nothing. */
void spPoolHostsClaimEnd(SpPool *pool, const char *name, gboolean written);

/* Take the store's lock for a change of a template (exclusive); close the
 * descriptor once the change is done. */
int spPoolHostsLockChange(SpPool *pool, GError **error);

/* What other hosts' images depend on the template @name: *@summary is
 * "lab-b (2), lab-c (1)", or NULL when nothing. A record that cannot be
 * read is an error: it may hold dependents. */
gboolean spPoolHostsDependents(SpPool *pool, const char *name, char **summary,
                               GError **error);

/* The same, counting only the images that name the template's file itself
 * (those a new version of it would change: records count the others as
 * versioned). */
gboolean spPoolHostsPinning(SpPool *pool, const char *name, char **summary,
                            GError **error);

/* Refuse a start on a host whose name another machine's record holds. */
gboolean spPoolHostsCheckName(SpPool *pool, GError **error);

/* ---- pool_checks.c: checks before a volume changes ---------------------- */

gboolean spPoolCheckNoDependents(SpPool *pool, const char *name, const char *path,
                                 SpChange change, GError **error);
/* What backs onto the template at @path now, directly or through one of
 * its replicas (of SpVolumeEntry). */
GPtrArray *spPoolTemplateDependents(SpPool *pool, const char *name, const char *path,
                                    GError **error);
gboolean spPoolCheckNoLayers(SpPool *pool, const char *name, const char *path,
                             SpChange change, GError **error);
gboolean spPoolCheckNotInUse(const char *name, const char *path, SpChange change,
                             GError **error);
int spPoolLockNotInUse(const char *name, const char *path, SpChange change,
                       GError **error);
gboolean spPoolCheckTemplateChange(SpPool *pool, const char *name, const char *path,
                                   SpChange change, GError **error);

/* ---- pool_collect.c: when a replica may go ------------------------------ */

/* Whether garbage collection may remove the replica at @path. */
gboolean spPoolReplicaUnused(SpPool *pool, const char *path);

/* Whether an instance (or a QEMU, or a build) uses the replica at @path;
 * unlike spPoolReplicaUnused, a replica the policy merely wants ready
 * counts as unused: the RAM tier may evict it. */
gboolean spPoolReplicaHasUsers(SpPool *pool, const char *path);

/* Remove the replica at @path if nothing uses it any more. */
void spPoolCollectReplica(SpPool *pool, const char *path);

/* Make room for @need bytes in the RAM tier (nothing without one):
 * unused replicas go, least recently used first, or SP_ERROR_NO_SPACE.
 * Replicas the pool keeps ready (spPoolReplicaWanted) count as unused
 * only if @evict_wanted. */
gboolean spPoolRamTierMakeRoom(SpPool *pool, guint64 need, gboolean evict_wanted,
                               GError **error);

/* ---- pool_hot.c: hot sets, learned from a copy-on-read boot ------------- */

/* Hot sets are kept in the secondary tier, which survives a reboot:
 *   SECONDARY/.stormpool-hot-sets/TEMPLATE-NAME/IDENTITY
 * and published in the primary tier for the hosts sharing it, under the
 * template's store identity (spReplicaStoreIdentity):
 *   PRIMARY/.stormpool-hot-sets/TEMPLATE-NAME/STORE-IDENTITY */
#define SP_HOT_SET_DIR ".stormpool-hot-sets"

char *spPoolHotSetPath(SpPool *pool, const char *template_name, const char *identity);

/* Whether the hot set of the template at @template_path (its current
 * identity @identity) is known, learned here or published by another
 * host: a question, answered from the files. */
gboolean spPoolHotSetKnown(SpPool *pool, const char *template_path, const char *identity);

/* Learn it if it is not known yet, from the instances backing directly
 * onto the template (pool_hot.c says which one qualifies): a scan of the
 * secondary tier and a write, for the background worker. FALSE with no
 * error means: still learning. */
gboolean spPoolHotSetLearn(SpPool *pool, const char *template_path, const char *identity,
                           GError **error);

/* Make the hot replica @replica_path of @template_path from its stored
 * hot set, within the RAM tier's cap (spPoolRamTierMakeRoom). */
gboolean spPoolHotReplicaMake(SpPool *pool, const char *template_path,
                              const char *replica_path, guint64 reserved,
                              gboolean evict_wanted, GError **error);

/* Hot sets of identities no template has any more. */
void spPoolCollectHotSets(SpPool *pool);

/* ---- pool_versions.c: template versions --------------------------------- */

/* vol-upload into the template @name at @path while @dependents (of
 * SpVolumeEntry) or other pools depend on it (@remote summarises those of
 * their images that name the template's file, or is NULL): checks, and
 * *@target, the file the stream writes the new version
 * to. From then on the version is published when the stream has ended
 * (spPoolVersionsSettle). */
gboolean spPoolVersionUploadBegin(SpPool *pool, const char *name, const char *path,
                                  GPtrArray *dependents, const char *remote,
                                  guint64 offset, char **target, GError **error);

/* Publish the uploads whose streams have ended (of the template @name, or
 * of all with NULL): a whole image of the template's format becomes the
 * template, the old file is kept as a version; anything else is removed,
 * the template unchanged. */
void spPoolVersionsSettle(SpPool *pool, const char *name);

/* The file a replica of template @name with @identity is made from: the
 * template, or the kept version of that identity. */
char *spPoolVersionSource(SpPool *pool, const char *name, const char *identity);

/* An instance asked onto @replica_path, a replica of template @name (the
 * backing a migrated or cloned desktop's chain names, of this host or of
 * another one), needs the very version that replica holds: TRUE if that
 * is the template's current one, or if the replica is one of this pool's
 * own (*@exact: the instance backs onto it as it is); else an error that
 * says why not. */
gboolean spPoolReplicaVersionCheck(SpPool *pool, const char *name, const char *replica_path,
                                   gboolean *exact, GError **error);

/* Remove kept versions nothing needs any more, and uploads no stream
 * writes (a daemon killed during an upload). */
void spPoolCollectVersions(SpPool *pool);

/* pool-dumpxml's status of the kept versions (of SpReplicaStatus), their
 * dependents counted from @users (backing path -> instances). */
GPtrArray *spPoolVersionsStatus(SpPool *pool, GHashTable *users);

/* ---- pool_replicas.c: making replicas ----------------------------------- */

/* Make sure the replica @replica_path of @template_path exists, making it
 * if needed; concurrent callers for one replica wait for the one making
 * it. On success the caller is a user of the replica, which keeps it from
 * garbage collection until spPoolReplicaRelease(). */
gboolean spPoolReplicaEnsure(SpPool *pool, const char *template_path,
                             const char *replica_path, GError **error);

/* Start making @replica_path in the background (prepare='eager'). */
void spPoolReplicaPrepare(SpPool *pool, const char *template_path,
                          const char *replica_path);

/* Make the missing replica @replica_path again (after a host reboot
 * emptied the RAM tier), waiting for one being made. */
gboolean spPoolReplicaRebuild(SpPool *pool, const char *template_path,
                              const char *replica_path, GError **error);

/* What a flattened copy of the chain from @path down holds at most. */
guint64 spPoolChainAllocation(const char *path);
