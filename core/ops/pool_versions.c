/*
 * pool_versions.c: new versions of a template, uploaded while instances
 * depend on it, and the old versions kept for them
 *
 * vol-upload into a template with dependents does not write the
 * template: the stream goes to a file of its own in the primary tier's
 * version directory (template_versions.h). When the stream has ended (the
 * storage driver refreshes the pool then; a plan of a new instance of the
 * template also looks), the file is checked and, if it is a whole image
 * of the template's format, the template's file is kept as a version and
 * the new file takes the template's name in one rename. A failed or wrong
 * upload is removed: the template and its dependents never see it.
 *
 * Instances name what they back onto by path, so a version can only be
 * published while none of them names the template's own file: they back
 * onto replicas (copies, links, hot replicas, which name the kept version)
 * or onto kept versions. Those that name the template's file pin it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool/pool_private.h"
#include "stormpool/error.h"
#include "fs/backing_path.h"
#include "fs/image_lock.h"
#include "image/qemu_img.h"
#include "replica/template_versions.h"

/* How many pinning images a refusal names before "and N more". */
#define PINS_LISTED 5

/* ---- beginning an upload --------------------------------------------------- */

/* The dependents that name the template's file (spPoolBackingPinsTemplate)
 * pin it: each distinct backing file is looked at once. */
static gboolean
refusePinned(SpPool *pool, const char *name, const char *path, GPtrArray *dependents,
             GError **error)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    g_autofree char *summary = NULL;
    gpointer pins;
    guint i;

    for (i = 0; i < dependents->len; i++) {
        SpVolumeEntry *entry = g_ptr_array_index(dependents, i);

        if (!entry->backing_path)
            continue;
        if (!g_hash_table_lookup_extended(seen, entry->backing_path, NULL, &pins)) {
            pins = GINT_TO_POINTER(spPoolBackingPinsTemplate(pool, entry->backing_path));
            g_hash_table_insert(seen, entry->backing_path, pins);
        }
        if (pins)
            g_ptr_array_add(names, entry->name);
    }
    if (names->len == 0)
        return TRUE;
    summary = spTemplateDependentsSummary(names, PINS_LISTED);
    g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                "cannot upload a new version of template '%s': %u image(s) name its file "
                "'%s' itself as their backing file, which must keep its contents: %s "
                "(instances of policy 'none', or made before the template's hot set "
                "was learned, or made by hand)", name, names->len, path, summary);
    return FALSE;
}


/* What only a whole new image can be: the stream starts at 0, nobody
 * writes the template, no image of another host names its file
 * (@remote: their records' counts of those, "lab-b (2)"). */
static gboolean
checkVersionUpload(const char *name, const char *path, const char *remote,
                   guint64 offset, GError **error)
{
    gboolean writer = FALSE;

    if (remote) {
        g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                    "cannot upload a new version of template '%s': images of other "
                    "pools name its file itself (%s), which must keep its contents",
                    name, remote);
        return FALSE;
    }
    if (offset != 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "cannot upload into template '%s' at offset %" G_GUINT64_FORMAT
                    ": instances depend on it, so an upload is a whole new version, "
                    "from offset 0", name, offset);
        return FALSE;
    }
    if (!spImageHasWriter(path, &writer, error))
        return FALSE;
    if (writer) {
        g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                    "cannot upload a new version of template '%s': a running guest or "
                    "another QEMU process is writing to it", name);
        return FALSE;
    }
    return TRUE;
}


gboolean
spPoolVersionUploadBegin(SpPool *pool, const char *name, const char *path,
                         GPtrArray *dependents, const char *remote, guint64 offset,
                         char **target, GError **error)
{
    struct stat sb;
    char *upload;
    int lock;

    if (!checkVersionUpload(name, path, remote, offset, error) ||
        !refusePinned(pool, name, path, dependents, error))
        return FALSE;
    if (stat(path, &sb) < 0)
        return spErrorSetErrno(error, errno, "cannot stat template '%s'", path);
    /* The new version is the template's file from then on: its mode
     * and owner, which QEMU's user may need, stay those of the template. */
    if (!(upload = spVersionUploadNew(pool->primary, name, sb.st_mode & 07777,
                                      sb.st_uid, sb.st_gid, error)))
        return FALSE;
    /* A read lock: a descriptor open for writing would make the stream
     * look as if it never ended (spProcessWritesFile). */
    if ((lock = spImageLockReader(upload, error)) < 0) {
        spVersionRemove(upload, NULL);
        g_free(upload);
        return FALSE;
    }
    spPoolVersionUploadSet(pool, name, upload, lock);
    spPoolUploadSet(pool, upload, FALSE);
    g_info("vol-upload into template '%s' writes a new version to '%s': %u instance(s) "
           "depend on the current one", name, upload, dependents->len);
    *target = upload;
    return TRUE;
}


/* ---- publishing --------------------------------------------------------- */

/* A new version is the template's kind of image, whole: a qcow2
 * template's version is a qcow2 image qemu-img check finds no fault in;
 * a raw template's has the current version's size (raw has no header
 * that could tell a whole image from a stream that broke off, or from
 * a file that is no image at all). No backing file: versions stand alone. */
static gboolean
validate(const char *path, const char *upload, GError **error)
{
    g_autoptr(SpVolume) now = NULL;
    g_autoptr(SpVolume) next = NULL;

    if (!(now = spVolumeRead(path, SP_TIER_PRIMARY, error)) ||
        !(next = spVolumeRead(upload, SP_TIER_PRIMARY, error)))
        return FALSE;
    if (next->info.format != now->info.format) {
        g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                    "the upload is %s, the template a %s image: a new version keeps "
                    "the template's format",
                    next->info.format == SP_IMAGE_FORMAT_RAW ? "no qcow2 image (no qcow2 "
                    "header)" : "a qcow2 image", spImageFormatName(&now->info));
        return FALSE;
    }
    if (next->backing_path) {
        g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                    "the upload has a backing file ('%s'); a version must stand alone",
                    next->backing_path);
        return FALSE;
    }
    if (now->info.format == SP_IMAGE_FORMAT_QCOW2)
        return spQemuImgCheck(upload, error);
    if (next->info.file_size != now->info.virtual_size) {
        g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                    "the raw upload has %" G_GUINT64_FORMAT " bytes, the template %"
                    G_GUINT64_FORMAT ": a raw version keeps the template's size",
                    next->info.file_size, now->info.virtual_size);
        return FALSE;
    }
    return TRUE;
}


/* Uploading an older image again is the rollback: the kept version with
 * the same bytes becomes the template again, with its identity, so its
 * replicas and hot set serve again. NULL when none has them; @path
 * itself when the template has them already. */
static char *
sameVersion(SpPool *pool, const char *name, const char *path, const char *upload)
{
    g_autoptr(GPtrArray) versions = spVersionList(pool->primary, name, NULL);
    gboolean same = FALSE;
    guint i;

    if (spVersionSameBytes(upload, path, &same, NULL) && same)
        return g_strdup(path);
    for (i = 0; versions && i < versions->len; i++) {
        const char *version = g_ptr_array_index(versions, i);

        if (spVersionSameBytes(upload, version, &same, NULL) && same)
            return g_strdup(version);
    }
    return NULL;
}


/* The old file is kept before the name moves on: at every moment the
 * template is the old version or the new one, and the old one has the
 * path its dependents may come to name. */
static gboolean
publish(SpPool *pool, const char *name, const char *path, const char *upload,
        GError **error)
{
    g_autofree char *back = sameVersion(pool, name, path, upload);
    g_autofree char *kept = NULL;
    g_autoptr(SpVolume) volume = NULL;

    if (back && strcmp(back, path) == 0) {
        g_info("the upload into template '%s' holds its current version: nothing changes",
               name);
        return spVersionRemove(upload, error);
    }
    if (!(kept = spVersionKeep(pool->primary, name, path, error)) ||
        !spVersionPublish(back ? back : upload, path, back != NULL, error) ||
        (back && !spVersionRemove(upload, error)))
        return FALSE;
    spPoolForgetTemplateStamp(pool, path);
    if ((volume = spVolumeRead(path, SP_TIER_PRIMARY, NULL)))
        spPoolIndexUpdate(pool, volume);
    g_info("published %s of template '%s'; the version before is kept as '%s' for "
           "what depends on it", back ? "an older version again" : "a new version",
           name, kept);
    return TRUE;
}


static void
settleOne(SpPool *pool, const char *name)
{
    g_autofree char *upload = spPoolVersionUploadOf(pool, name);
    g_autofree char *path = NULL;
    g_autoptr(GError) err = NULL;

    if (!upload || spPoolTemplateUploading(pool, upload) ||
        !spPoolVersionUploadTake(pool, name))
        return;
    path = g_build_filename(pool->primary, name, NULL);
    if (validate(path, upload, &err) && publish(pool, name, path, upload, &err))
        return;
    g_critical("the new version of template '%s' uploaded to '%s' is refused, the "
               "template and its instances are unchanged: %s", name, upload, err->message);
    g_clear_error(&err);
    if (access(upload, F_OK) == 0 && !spVersionRemove(upload, &err))
        g_warning("%s", err->message);
}


void
spPoolVersionsSettle(SpPool *pool, const char *name)
{
    g_autoptr(GPtrArray) names = NULL;
    guint i;

    if (name) {
        settleOne(pool, name);
        return;
    }
    names = spPoolVersionUploadNames(pool);
    for (i = 0; i < names->len; i++)
        settleOne(pool, g_ptr_array_index(names, i));
}


/* The identity this host gives the version's file, which names this
 * host's replicas of it: the name the publishing host gave it, unless
 * that host sees another device number for the shared store. */
static char *
localIdentity(const char *version)
{
    char *identity = spReplicaIdentity(version, NULL);

    return identity ? identity : g_path_get_basename(version);
}


static char *
versionOfIdentity(SpPool *pool, const char *name, const char *identity)
{
    g_autoptr(GPtrArray) versions = spVersionList(pool->primary, name, NULL);
    guint i;

    for (i = 0; versions && i < versions->len; i++) {
        const char *version = g_ptr_array_index(versions, i);
        g_autofree char *local = localIdentity(version);

        if (strcmp(local, identity) == 0)
            return g_strdup(version);
    }
    return NULL;
}


char *
spPoolVersionSource(SpPool *pool, const char *name, const char *identity)
{
    g_autofree char *path = g_build_filename(pool->primary, name, NULL);
    g_autofree char *current = spReplicaIdentity(path, NULL);
    char *version;

    if (current && strcmp(current, identity) == 0)
        return g_steal_pointer(&path);
    if ((version = versionOfIdentity(pool, name, identity)))
        return version;
    return g_steal_pointer(&path);
}


/* The identity in a replica's name is the one its host gave the version
 * (with that host's device number for the store): this host matches it
 * against its own replicas only. One of its own replicas holds the very
 * data an image on it needs, whatever version it is of. Another host's
 * replica is of the current version when no older one is kept, since an
 * older version that anything still needs, on any host, is kept. (A
 * template changed behind libvirt's back keeps no version: every host
 * reports it at its next refresh, but this check cannot tell.) */
gboolean
spPoolReplicaVersionCheck(SpPool *pool, const char *name, const char *replica_path,
                          gboolean *exact, GError **error)
{
    g_autofree char *identity = g_path_get_basename(replica_path);
    g_autofree char *template_path = g_build_filename(pool->primary, name, NULL);
    g_autofree char *current = spReplicaIdentity(template_path, NULL);
    g_autoptr(GPtrArray) versions = NULL;

    *exact = FALSE;
    if (current && strcmp(current, identity) == 0)
        return TRUE;
    if (g_file_test(replica_path, G_FILE_TEST_IS_REGULAR)) {
        *exact = TRUE;
        return TRUE;
    }
    versions = spVersionList(pool->primary, name, NULL);
    if (versions && versions->len > 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "cannot tell which version of template '%s' backing image '%s' holds: "
                    "it is not a replica of its current version, and %u older version(s) "
                    "are kept", name, replica_path, versions->len);
        return FALSE;
    }
    return TRUE;
}


/* ---- what a kept version's dependents are ------------------------------ */

/* Whether @entry backs onto the version @version (by its path: the
 * template's own path is the current version's, even when it is the
 * same inode) or onto a replica of it, made or missing. */
static gboolean
backsOnto(SpPool *pool, const SpVolumeEntry *entry, const char *name, const char *version,
          const char *identity)
{
    g_autofree char *replica_of = NULL;
    g_autofree char *real = NULL;
    g_autofree char *target = NULL;
    g_autofree char *base = NULL;

    if (!entry->backing_path)
        return FALSE;
    if ((replica_of = spPoolReplicaTemplateName(pool, entry->backing_path))) {
        base = g_path_get_basename(entry->backing_path);
        return strcmp(replica_of, name) == 0 && strcmp(base, identity) == 0;
    }
    real = realpath(entry->backing_path, NULL);
    target = realpath(version, NULL);
    return real && target && strcmp(real, target) == 0;
}


/* A replica of the version's identity exists, or is being made: it
 * needs the version to be made again (RAM tier) or holds dependents. */
static gboolean
hasReplica(SpPool *pool, const char *name, const char *identity)
{
    g_autofree char *ssd = spReplicaPath(pool->secondary, name, identity);
    g_autofree char *ram = spReplicaPath(spPoolReplicaRoot(pool), name, identity);

    return access(ssd, F_OK) == 0 || access(ram, F_OK) == 0 ||
           spPoolReplicaBusy(pool, ssd) || spPoolReplicaBusy(pool, ram);
}


static gboolean
neededAs(SpPool *pool, GPtrArray *entries, const char *name, const char *version,
         const char *identity)
{
    guint i;

    if (hasReplica(pool, name, identity))
        return TRUE;
    for (i = 0; i < entries->len; i++) {
        if (backsOnto(pool, g_ptr_array_index(entries, i), name, version, identity))
            return TRUE;
    }
    return FALSE;
}


/* By both names of its identity: the one it was kept under (which a
 * template changed in place since no longer has) and this host's. */
static gboolean
versionNeeded(SpPool *pool, GPtrArray *entries, const char *name, const char *version)
{
    g_autofree char *kept = g_path_get_basename(version);
    g_autofree char *local = localIdentity(version);
    gboolean in_use = TRUE;

    if (neededAs(pool, entries, name, version, kept) ||
        (strcmp(local, kept) != 0 && neededAs(pool, entries, name, version, local)))
        return TRUE;
    /* A guest started on the version itself (its disk names the file). */
    return !spImageInUse(version, &in_use, NULL) || in_use;
}


/* Other pools sharing the primary tier count their dependents by
 * template name: while they have any, every version of it stays. */
static void
collectTemplateVersions(SpPool *pool, GPtrArray *entries, const char *name)
{
    g_autoptr(GPtrArray) versions = spVersionList(pool->primary, name, NULL);
    g_autofree char *remote = NULL;
    g_autoptr(GError) err = NULL;
    guint i;

    if (!versions || versions->len == 0)
        return;
    if (!spPoolHostsDependents(pool, name, &remote, &err) || remote)
        return;
    for (i = 0; i < versions->len; i++) {
        const char *version = g_ptr_array_index(versions, i);

        if (versionNeeded(pool, entries, name, version))
            continue;
        if (!spVersionRemove(version, &err)) {
            g_warning("%s", err->message);
            g_clear_error(&err);
            continue;
        }
        g_info("removed version '%s' of template '%s': nothing depends on it any more",
               version, name);
    }
}


/* Upload files no daemon holds (pool_uploads.c): a daemon killed during
 * the upload. The template was never touched. */
static void
collectStaleUploads(SpPool *pool, const char *name)
{
    g_autofree char *dir = g_build_filename(pool->primary, SP_VERSION_DIR, name, NULL);
    g_autofree char *current = spPoolVersionUploadOf(pool, name);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *file;

    while (d && (file = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, file, NULL);
        gboolean held = TRUE;

        if (!spVersionIsUploadName(file) || g_strcmp0(path, current) == 0 ||
            !spImageInUse(path, &held, NULL) || held)
            continue;
        if (spVersionRemove(path, NULL))
            g_warning("removed '%s', the upload of a version that never ended", path);
    }
}


void
spPoolCollectVersions(SpPool *pool)
{
    g_autoptr(GPtrArray) names = spVersionTemplates(pool->primary);
    g_autoptr(GPtrArray) entries = NULL;
    g_autoptr(GError) err = NULL;
    guint i;

    if (names->len == 0)
        return;
    if (!spPoolChainsSync(pool, &err)) {
        g_warning("cannot collect template versions: %s", err->message);
        return;
    }
    entries = spPoolIndexEntries(pool);
    for (i = 0; i < names->len; i++) {
        collectStaleUploads(pool, g_ptr_array_index(names, i));
        collectTemplateVersions(pool, entries, g_ptr_array_index(names, i));
    }
}


/* ---- status ------------------------------------------------------------- */

static guint
countUsers(SpPool *pool, GHashTable *users, const char *name, const char *version)
{
    g_autofree char *identity = localIdentity(version);
    g_autofree char *ssd = spReplicaPath(pool->secondary, name, identity);
    g_autofree char *ram = spReplicaPath(spPoolReplicaRoot(pool), name, identity);
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(users, version)) +
              GPOINTER_TO_UINT(g_hash_table_lookup(users, ssd));

    if (strcmp(ram, ssd) != 0)
        n += GPOINTER_TO_UINT(g_hash_table_lookup(users, ram));
    return n;
}


/* The link of the current version (what a hot replica names, or a
 * version rolled back to) is the template itself: not listed. */
static void
addStatus(SpPool *pool, GPtrArray *status, GHashTable *users, const char *name)
{
    g_autoptr(GPtrArray) versions = spVersionList(pool->primary, name, NULL);
    g_autofree char *path = g_build_filename(pool->primary, name, NULL);
    struct stat current = { 0 };
    guint i;

    if (stat(path, &current) < 0)
        current.st_ino = 0;
    for (i = 0; versions && i < versions->len; i++) {
        const char *version = g_ptr_array_index(versions, i);
        SpReplicaStatus *s;
        struct stat sb;

        if (stat(version, &sb) < 0 ||
            (sb.st_ino == current.st_ino && sb.st_dev == current.st_dev))
            continue;
        s = g_new0(SpReplicaStatus, 1);
        s->template_name = g_strdup(name);
        s->path = g_strdup(version);
        s->dependents = countUsers(pool, users, name, version);
        s->size = sb.st_size;
        s->allocation = (guint64) sb.st_blocks * 512;
        g_ptr_array_add(status, s);
    }
}


GPtrArray *
spPoolVersionsStatus(SpPool *pool, GHashTable *users)
{
    g_autoptr(GPtrArray) names = spVersionTemplates(pool->primary);
    GPtrArray *status = g_ptr_array_new_with_free_func((GDestroyNotify) spReplicaStatusFree);
    guint i;

    for (i = 0; i < names->len; i++)
        addStatus(pool, status, users, g_ptr_array_index(names, i));
    return status;
}
