/*
 * pool_chains.c: every chain in the tiers, whoever made it
 *
 * The pool makes templates and instances, but libvirt's block jobs and
 * external snapshots, virt-clone, qemu-img and other hosts' tools add
 * images of their own to its tiers. Each file of the tiers is a volume
 * with a role (template, instance, layer) and the file it backs onto, as
 * its header says; what depends on a file is read from that, never
 * guessed from who made it.
 *
 * The index (pool_index.c) keeps what refresh found. A change that could
 * take a file away from what depends on it (delete, wipe, resize,
 * upload, collecting a replica) first brings the index up to date: one
 * fstatat() per file of the tiers, and a header read only of the files
 * that changed since they were last read (header_cache.c). A layer made a
 * moment ago, behind libvirt's back, is known; a layer whose backing
 * file a block job rewrote is known by what it backs onto now.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool_private.h"
#include "stormpool/error.h"
#include "util/dir.h"
#include "fs/backing_path.h"
#include "fs/transient_layer.h"

void
spVolumeFree(SpVolume *volume)
{
    if (!volume)
        return;
    g_free(volume->name);
    g_free(volume->path);
    g_free(volume->backing_path);
    spImageInfoClear(&volume->info);
    g_free(volume);
}


/* Images stormpool does not handle are no volumes of the pool. */
static SpVolume *
volumeAccept(SpVolume *volume, GError **error)
{
    g_autoptr(SpVolume) owned = volume;

    if (volume->info.format == SP_IMAGE_FORMAT_OTHER) {
        g_set_error(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                    "'%s' is a %s image; stormpool volumes are qcow2 or raw",
                    volume->path, volume->info.other_format);
        return NULL;
    }
    if (volume->info.external_data_file) {
        g_set_error(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                    "'%s' uses an external data file, which stormpool does not support",
                    volume->path);
        return NULL;
    }
    if (volume->info.backing_file)
        volume->backing_path = spBackingFileResolve(volume->path, volume->info.backing_file);
    return g_steal_pointer(&owned);
}


static SpVolume *
volumeNew(const char *dir, const char *name, SpTier tier)
{
    SpVolume *volume = g_new0(SpVolume, 1);

    volume->name = g_strdup(name);
    volume->path = g_build_filename(dir, name, NULL);
    volume->tier = tier;
    volume->role = tier == SP_TIER_PRIMARY ? SP_ROLE_TEMPLATE : SP_ROLE_LAYER;
    return volume;
}


SpVolume *
spVolumeRead(const char *path, SpTier tier, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *name = g_path_get_basename(path);
    g_autoptr(SpVolume) volume = volumeNew(dir, name, tier);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    gboolean ok;

    if (fd < 0) {
        spErrorSetErrno(error, errno, "cannot open volume '%s'", path);
        return NULL;
    }
    if (fstat(fd, &volume->sb) < 0)
        ok = spErrorSetErrno(error, errno, "cannot stat volume '%s'", path);
    else
        ok = spImageInfoReadFdStat(fd, &volume->sb, &volume->info, error);
    close(fd);
    return ok ? volumeAccept(g_steal_pointer(&volume), error) : NULL;
}


/* ---- roles ----------------------------------------------------------------- */

const char *
spVolumeRoleName(SpVolumeRole role)
{
    switch (role) {
    case SP_ROLE_TEMPLATE:
        return "template";
    case SP_ROLE_INSTANCE:
        return "instance";
    case SP_ROLE_LAYER:
        break;
    }
    return "layer";
}


/* Why a template with a backing file of its own must not be used, or
 * NULL. Its header may have been written by a guest (a raw template whose
 * guest wrote a qcow2 header), and making a replica reads the whole chain
 * as root: the chain must stay inside the primary tier, with the formats
 * written down. */
static const char *
unsafeTemplateReason(SpPool *pool, const SpVolume *volume)
{
    const char *format = volume->info.backing_format;

    if (!volume->backing_path)
        return NULL;
    if (!spPathIsInDir(volume->backing_path, pool->primary))
        return "its backing file is outside the primary tier";
    if (!format || (strcmp(format, "qcow2") != 0 && strcmp(format, "raw") != 0))
        return "its header does not name the format of its backing file";
    return NULL;
}


/* Whether the resolved path @real (no symbolic link, no "..") is a file
 * of the directory @dir, which may itself be named through a link. */
static gboolean
realInDir(const char *real, const char *dir)
{
    g_autofree char *real_dir = realpath(dir, NULL);

    return real_dir && spPathIsInDir(real, real_dir);
}


/* The role of an image of the secondary tier backing onto @backing as
 * written (the pool writes canonical absolute paths); FALSE if that is
 * outside the pool's tiers. */
static gboolean
roleOfBacking(SpPool *pool, const char *backing, SpVolumeRole *role)
{
    g_autofree char *template = NULL;

    *role = SP_ROLE_LAYER;
    if (spPathIsInDir(backing, pool->secondary))
        return TRUE;
    *role = SP_ROLE_INSTANCE;
    return spPathIsInDir(backing, pool->primary) ||
           (template = spPoolBackingTemplateName(pool, backing));
}


/* An image of the secondary tier is an instance when it backs onto a
 * template or a replica of one; any other image there is a layer, and
 * listed: whatever backs onto it is known, and whatever it backs onto is
 * protected. A backing file written through a symbolic link or ".." is
 * judged by the file it names. Only an image backing onto a file outside
 * the pool's tiers is not listed. */
const char *
spPoolVolumeClassify(SpPool *pool, SpVolume *volume)
{
    g_autofree char *real = NULL;
    SpVolumeRole role;

    if (volume->tier == SP_TIER_PRIMARY) {
        volume->role = SP_ROLE_TEMPLATE;
        return unsafeTemplateReason(pool, volume);
    }
    volume->role = SP_ROLE_LAYER;
    if (!volume->backing_path)
        return NULL;
    if (roleOfBacking(pool, volume->backing_path, &role)) {
        volume->role = role;
        return NULL;
    }
    if ((real = realpath(volume->backing_path, NULL))) {
        if (realInDir(real, pool->secondary))
            return NULL;
        if (realInDir(real, pool->primary)) {
            volume->role = SP_ROLE_INSTANCE;
            return NULL;
        }
    }
    return "its backing file is outside the pool's tiers";
}


/* The name of the template the backing file @backing is, or is a replica
 * of, or NULL: what an instance of this host depends on in the primary
 * tier that other hosts share. */
char *
spPoolTemplateOf(SpPool *pool, const char *backing)
{
    g_autofree char *real = NULL;
    char *name;

    if ((name = spPoolBackingTemplateName(pool, backing)))
        return name;
    if ((real = realpath(backing, NULL)) && realInDir(real, pool->primary))
        return g_path_get_basename(real);
    return NULL;
}


SpVolume *
spPoolScanFile(SpPool *pool, SpTier tier, int dirfd, const char *dir, const char *name,
               const char **unlisted, GError **error)
{
    g_autoptr(SpVolume) volume = volumeNew(dir, name, tier);
    gboolean hit;

    if (!spHeaderCacheRead(pool->headers, dirfd, dir, name, &volume->sb, &volume->info,
                           &hit, error) ||
        !(volume = volumeAccept(g_steal_pointer(&volume), error)))
        return NULL;
    *unlisted = spPoolVolumeClassify(pool, volume);
    return g_steal_pointer(&volume);
}


/* ---- keeping the index true ------------------------------------------------ */

/* A tier's directory, to list (the GDir) and to read files of (*@dirfd,
 * the caller closes it). */
static GDir *
openTierDir(const char *tier_name, const char *dir, int *dirfd, GError **error)
{
    GDir *d;

    if ((*dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        spErrorSetErrno(error, errno, "cannot read %s tier directory '%s'", tier_name, dir);
        return NULL;
    }
    if (!(d = spDirOpen(dir, error)))
        close(*dirfd);
    return d;
}


GDir *
spPoolTierOpen(SpTier tier, const char *dir, int *dirfd, GError **error)
{
    return openTierDir(spTierName(tier), dir, dirfd, error);
}


/* One tier into @volumes, quietly: refresh is the one that warns about
 * the files it skips. An image refresh does not list (named like a
 * template, or backing onto a file outside the tiers) still protects
 * what it backs onto: @unlisted. */
static gboolean
syncTier(SpPool *pool, SpTier tier, const char *dir, GHashTable *templates,
         GPtrArray *volumes, GPtrArray *unlisted, GError **error)
{
    g_autoptr(GDir) d = NULL;
    const char *name;
    int dirfd;

    if (!(d = spPoolTierOpen(tier, dir, &dirfd, error)))
        return FALSE;
    while ((name = g_dir_read_name(d))) {
        const char *skip = NULL;
        SpVolume *volume;

        if (name[0] == '.' ||
            !(volume = spPoolScanFile(pool, tier, dirfd, dir, name, &skip, NULL)))
            continue;
        if (skip || (tier == SP_TIER_SECONDARY && g_hash_table_contains(templates, name))) {
            g_ptr_array_add(unlisted, volume);
            continue;
        }
        if (tier == SP_TIER_PRIMARY)
            g_hash_table_add(templates, volume->name);
        g_ptr_array_add(volumes, volume);
    }
    close(dirfd);
    return TRUE;
}


/* The per-boot overlays libvirt makes in the pool's transient tier
 * (VOLUME.TRANSIENT-DOMAIN) are chains like any other: never listed, each
 * protects what it backs onto (an instance, a template or its replica)
 * while it is there. Before pool-start has made the tier there is none. */
static gboolean
syncTransientTier(SpPool *pool, GPtrArray *unlisted, GError **error)
{
    const char *dir = pool->ns->transient_tier;
    g_autoptr(GDir) d = NULL;
    const char *name;
    int dirfd;

    if (!dir || (access(dir, F_OK) < 0 && errno == ENOENT))
        return TRUE;
    if (!(d = openTierDir("transient", dir, &dirfd, error)))
        return FALSE;
    while ((name = g_dir_read_name(d))) {
        const char *skip = NULL;
        SpVolume *volume;

        if (spTransientLayerName(name) &&
            (volume = spPoolScanFile(pool, SP_TIER_SECONDARY, dirfd, dir, name, &skip, NULL)))
            g_ptr_array_add(unlisted, volume);
    }
    close(dirfd);
    spHeaderCacheSweep(pool->headers, dir);
    return TRUE;
}


gboolean
spPoolChainsSync(SpPool *pool, GError **error)
{
    g_autoptr(GPtrArray) volumes = g_ptr_array_new_with_free_func((GDestroyNotify) spVolumeFree);
    g_autoptr(GPtrArray) unlisted = g_ptr_array_new_with_free_func((GDestroyNotify) spVolumeFree);
    g_autoptr(GHashTable) templates = g_hash_table_new(g_str_hash, g_str_equal);
    guint64 began = spPoolIndexGeneration(pool);

    if (!syncTier(pool, SP_TIER_PRIMARY, pool->primary, templates, volumes, unlisted, error) ||
        !syncTier(pool, SP_TIER_SECONDARY, pool->secondary, templates, volumes, unlisted,
                  error) ||
        !syncTransientTier(pool, unlisted, error))
        return FALSE;
    spPoolIndexReplace(pool, volumes, unlisted, began);
    return TRUE;
}


/* ---- what depends on what -------------------------------------------------- */

typedef struct {
    dev_t dev;
    ino_t ino;
} FileId;


/* The files @paths name, as inodes: a backing file may be written as
 * another path to the same file (a hard-linked replica, "..", a
 * symbolic link to the tier). Files that are gone have no dependents. */
static GArray *
fileIds(const char *const *paths, GError **error)
{
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(FileId));
    size_t i;

    for (i = 0; paths[i]; i++) {
        struct stat sb;
        FileId id;

        if (stat(paths[i], &sb) < 0) {
            if (errno == ENOENT)
                continue;
            spErrorSetErrno(error, errno, "cannot stat '%s'", paths[i]);
            return NULL;
        }
        id.dev = sb.st_dev;
        id.ino = sb.st_ino;
        g_array_append_val(ids, id);
    }
    return g_steal_pointer(&ids);
}


static gboolean
isOneOf(const char *path, GArray *ids)
{
    struct stat sb;
    guint i;

    if (stat(path, &sb) < 0)
        return FALSE;
    for (i = 0; i < ids->len; i++) {
        FileId *id = &g_array_index(ids, FileId, i);

        if (id->dev == sb.st_dev && id->ino == sb.st_ino)
            return TRUE;
    }
    return FALSE;
}


static int
compareEntryNames(gconstpointer a, gconstpointer b)
{
    const SpVolumeEntry *x = *(SpVolumeEntry * const *) a;
    const SpVolumeEntry *y = *(SpVolumeEntry * const *) b;

    return strcmp(x->name, y->name);
}


/* Each distinct backing file is looked at once: thousands of instances
 * back onto a handful of templates and replicas. */
GPtrArray *
spPoolChainDependents(SpPool *pool, const char *const *paths, GError **error)
{
    g_autoptr(GPtrArray) entries = spPoolIndexEntries(pool);
    g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func((GDestroyNotify) spVolumeEntryFree);
    g_autoptr(GHashTable) backs = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GArray) ids = NULL;
    gpointer known;
    guint i;

    if (!(ids = fileIds(paths, error)))
        return NULL;
    for (i = 0; i < entries->len && ids->len > 0; i++) {
        SpVolumeEntry *entry = g_ptr_array_index(entries, i);

        if (!entry->backing_path)
            continue;
        if (!g_hash_table_lookup_extended(backs, entry->backing_path, NULL, &known)) {
            known = GINT_TO_POINTER(isOneOf(entry->backing_path, ids));
            g_hash_table_insert(backs, entry->backing_path, known);
        }
        if (known)
            g_ptr_array_add(found, g_steal_pointer(&g_ptr_array_index(entries, i)));
    }
    g_ptr_array_sort(found, compareEntryNames);
    return g_steal_pointer(&found);
}
