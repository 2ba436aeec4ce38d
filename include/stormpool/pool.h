/*
 * pool.h: a stormpool pool, what it holds and what can be done with it
 *
 * One SpPool per pool definition: its two tiers, its settings from the
 * pool XML, and everything that is known about it while it runs (the
 * replicas being made and who waits for them, the uploads under way, the
 * live status shown by pool-dumpxml). The libvirt module turns each
 * storage driver callback into one call of this API and each GError into
 * a libvirt error; nothing here calls back into libvirt.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <libxml/tree.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "stormpool/types.h"

G_BEGIN_DECLS

typedef struct _SpPool SpPool;

/* ---- the object --------------------------------------------------------- */

/* A pool from its <pool> element: the tiers named by <source><dir> and
 * <target><path>, and the stormpool namespace (spPoolNamespaceParse). */
SpPool *spPoolNewFromXml(xmlNodePtr pool, GError **error);

/* A pool from its parts; @policy and @eager as <stormpool:replica> says. */
SpPool *spPoolNew(const char *primary, const char *secondary,
                  SpReplicaPolicy policy, gboolean eager);

/* Background replica copies hold a reference while they run. */
SpPool *spPoolRef(SpPool *pool);
void spPoolUnref(SpPool *pool);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SpPool, spPoolUnref)

const char *spPoolPrimary(const SpPool *pool);
const char *spPoolSecondary(const SpPool *pool);

/* The namespace elements of pool-dumpxml (spPoolNamespaceFormat). */
GPtrArray *spPoolFormatXml(SpPool *pool);

/* ---- the pool ------------------------------------------------------------ */

/* Whether both tier directories exist. */
gboolean spPoolTiersExist(SpPool *pool);

/* Before pool-build makes the tier directories: their paths are absolute,
 * distinct, and neither is inside the other. */
gboolean spPoolCheckLayout(SpPool *pool, GError **error);

/* Check the tiers (spTierLayoutCheck) and the replica policy. */
gboolean spPoolCheck(SpPool *pool, GError **error);

/* spPoolCheck, then let replica copies run (again). */
gboolean spPoolStart(SpPool *pool, GError **error);

/* Stop the replica copies (waiting a few seconds for them to clean up),
 * drop the queued ones, and forget the live status. */
void spPoolStop(SpPool *pool);

/* Remove the pool's own files and both tier directories, which must be
 * empty otherwise: pool-delete never removes a volume. */
gboolean spPoolDeleteTiers(SpPool *pool, GError **error);

/* The policy in force: 'auto' resolved to link or copy, and 'link'
 * refused when the tiers are on different file systems. */
gboolean spPoolReplicaPolicy(SpPool *pool, SpReplicaPolicy *policy, GError **error);

/* ---- refresh ------------------------------------------------------------- */

/* Wait until the background work queued for @pool so far (replica
 * copies, and what refresh hands on: collection, stamps, hot-set
 * learning, RAM-tier rebuilds) is done. */
void spPoolWaitIdle(SpPool *pool);

/* A volume as refresh found it in a tier. */
typedef struct {
    char *name;
    char *path;
    SpTier tier;
    SpVolumeRole role;
    struct stat sb;
    SpImageInfo info;       /* qcow2 or raw, never OTHER */
    char *backing_path;     /* the resolved backing file, or NULL */
} SpVolume;

void spVolumeFree(SpVolume *volume);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SpVolume, spVolumeFree)

/* Read the volume at @path (no symlink), refusing images stormpool does
 * not handle (SP_ERROR_UNSUPPORTED). */
SpVolume *spVolumeRead(const char *path, SpTier tier, GError **error);

/* Scan both tiers: the volumes, the live status, and stale temporary
 * files of interrupted creations. What takes long is handed to the
 * pool's background worker: template stamps, hot sets learned and
 * collected, replicas made (eagerly, or again after a reboot) or removed
 * when unused. Returns the volumes, the templates first; files that are
 * no volume of the pool are skipped with a warning. @usage receives the
 * usage of the secondary tier. */
GPtrArray *spPoolRefresh(SpPool *pool, SpTierUsage *usage, GError **error);

/* ---- volumes ------------------------------------------------------------- */

/* Whether @path is an instance (a file of the secondary tier). */
gboolean spPoolIsInstance(SpPool *pool, const char *path);

/* The path of a new volume @name: an instance (with a backing store) in
 * the secondary tier, a template in the primary tier. */
char *spPoolVolumePath(SpPool *pool, const char *name, gboolean instance);

/* Names are unique across both tiers, also for files that appeared
 * behind libvirt's back since the last refresh. */
gboolean spPoolCheckNameFree(SpPool *pool, const char *name, GError **error);

/* The template an instance backs onto at @backing_path (the template
 * itself or one of its replicas), or NULL. */
char *spPoolBackingTemplateName(SpPool *pool, const char *backing_path);

/* If @path is a replica of this pool (in the secondary tier or the RAM
 * tier), its template's name. */
char *spPoolReplicaTemplateName(SpPool *pool, const char *path);

/* Where a new instance of the template at @template_path backs onto
 * under the pool's policy: the template, or its current replica. This is
 * the one place that says which replica is current. */
char *spPoolInstanceBacking(SpPool *pool, const char *template_path, GError **error);

/* Refuse a template that vol-upload is still writing. */
gboolean spPoolCheckNotUploading(SpPool *pool, const char *name, const char *path,
                                 GError **error);

/* ---- what a new volume will be (vol-create, before it is written) ---- */

/* A new volume as its XML asks for it. */
typedef struct {
    const char *pool_name;      /* for errors */
    const char *name;
    SpImageFormat format;       /* SP_IMAGE_FORMAT_OTHER: none the pool takes */
    const char *format_name;    /* as the XML named it, for errors */
    guint64 capacity;           /* 0 if none was given */
    gboolean encrypted;
    gboolean backing;           /* an instance: it has a <backingStore> */
    const char *backing_spec;   /* its <path>: a template's name or path,
                                 * or the path of a replica (vol-clone) */
    gboolean backing_raw;       /* its format is given as raw */
} SpVolumeRequest;

/* What the pool makes of it. */
typedef struct {
    char *path;                 /* in the tier of its kind */
    guint64 capacity;           /* an instance's defaults to its template's */
    char *backing_path;         /* an instance's template, or its replica */
    SpImageFormat backing_format;
} SpVolumePlan;

void spVolumePlanFree(SpVolumePlan *plan);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SpVolumePlan, spVolumePlanFree)

/* Check @request (name, format, capacity; for an instance, its template
 * among those the pool lists, their formats and sizes) and say where and
 * what the volume will be. libvirt holds the pool's lock meanwhile, so
 * the answer comes from the pool's state and the files' metadata: no
 * image is read, nothing is written. The volume is listed from now on,
 * as being built, until spPoolCreateVolume*() writes it or fails. */
SpVolumePlan *spPoolPlanVolume(SpPool *pool, const SpVolumeRequest *request,
                               GError **error);

/* Read the volume at @path again (vol-info, vol-dumpxml, a guest's start),
 * keeping what the pool lists of it current. An instance whose replica
 * is missing (a RAM tier emptied by a reboot, not made again yet by the
 * pool's worker) gets it first: its guest is about to open it. */
SpVolume *spPoolRefreshVolume(SpPool *pool, const char *path, GError **error);

/* The modes of new volumes whose creator named none. A template is a
 * backing image the QEMU of every guest of it reads, whatever user that
 * QEMU runs as, and libvirt does not relabel it: readable by everyone,
 * writable by the pool only. An instance is its guest's own: libvirt hands
 * it to QEMU's user while the guest runs and gives it back after. */
#define SP_TEMPLATE_DEFAULT_MODE 0644
#define SP_INSTANCE_DEFAULT_MODE 0600

/* A volume about to be written. */
typedef struct {
    const char *name;
    const char *path;
    SpImageFormat format;       /* RAW or QCOW2 */
    guint64 capacity;
    const char *backing_path;   /* instances: template or replica */
    const char *backing_format; /* "qcow2" or "raw", with backing_path */
    mode_t mode;                /* (mode_t) -1: the default of its kind */
    uid_t uid;                  /* (uid_t) -1 and (gid_t) -1 keep ours */
    gid_t gid;
    gboolean prealloc_metadata; /* asked for, and refused */
} SpNewVolume;

/* The volume a new one is made from (vol-create-from, vol-clone). */
typedef struct {
    const char *name;
    const char *path;
    SpImageFormat format;
    guint64 capacity;
    const char *backing_path;   /* or NULL */
} SpSourceVolume;

/* Write @vol: an empty template, or an instance whose replica is made
 * first when it is missing (waiting for one being made). */
gboolean spPoolCreateVolume(SpPool *pool, const SpNewVolume *vol, GError **error);

/* Write @vol from @src: a template gets @src's data, flattened; an
 * instance of the template @src is a fresh instance; an instance of an
 * instance is a copy of its overlay. A source a guest writes is refused. */
gboolean spPoolCreateVolumeFrom(SpPool *pool, const SpNewVolume *vol,
                                const SpSourceVolume *src, GError **error);

/* What would change a template, for refusals that say what was refused. */
typedef enum {
    SP_CHANGE_DELETE,
    SP_CHANGE_WIPE,
    SP_CHANGE_RESIZE,
    SP_CHANGE_UPLOAD,
} SpChange;

/* Delete the volume at @path; a template only without dependents, any
 * volume only when no QEMU has it open. Replicas nothing uses any more go
 * with it: those of a template, or @backing of an instance. */
gboolean spPoolDeleteVolume(SpPool *pool, const char *name, const char *path,
                            const char *backing, GError **error);

/* vol-wipe of the volume at @path (@zero: with the default algorithm).
 * An instance is reset to its template's pristine state, of the newest
 * version of the template, here, with zero only, and a layer to an empty overlay of what it backs onto. A
 * template or a layer with no backing file is checked (no dependents, no
 * upload, no QEMU, no alarm at the next refresh) and *@wipe_here says
 * that the caller then wipes the file as libvirt wipes any file. */
gboolean spPoolWipeVolume(SpPool *pool, const char *name, const char *path,
                          gboolean zero, gboolean *wipe_here, GError **error);

/* Grow the volume at @path from @current to @capacity bytes; shrinking,
 * which would discard guest data, is refused. */
gboolean spPoolResizeVolume(SpPool *pool, const char *name, const char *path,
                            SpImageFormat format, guint64 current, guint64 capacity,
                            GError **error);

/* vol-upload into the template at @path from @offset is about to open
 * its stream: checks, and *@target, the file the stream must write. That
 * is the template itself when nothing depends on it (new instances of it
 * are refused until the stream ends); else a new file, which becomes the
 * template's new version once the stream has ended and the file is found
 * to be a whole image of the template's format, the old version kept for
 * its dependents (docs/chains.md, "Template versions"). Call
 * spPoolUploadOpened with *@target once the stream is (@ok) or is not
 * set up. */
gboolean spPoolUploadBegin(SpPool *pool, const char *name, const char *path,
                           guint64 offset, char **target, GError **error);
void spPoolUploadOpened(SpPool *pool, const char *target, gboolean ok);

G_END_DECLS
