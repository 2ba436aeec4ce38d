/*
 * pool_volumes.c: writing, cloning, uploading into, resetting and deleting
 * volumes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool/pool_private.h"
#include "util/atomic_file.h"
#include "stormpool/error.h"
#include "util/file_copy.h"
#include "fs/image_lock.h"
#include "image/qcow2_overlay.h"
#include "image/qemu_img.h"
#include "fs/backing_path.h"

/* Open the temporary file a volume is written to, owned as requested. */
static SpAtomicFile *
beginFile(const SpNewVolume *vol, GError **error)
{
    g_autoptr(SpAtomicFile) file = NULL;

    if (!(file = spAtomicFileBegin(vol->path, vol->mode, error)))
        return NULL;
    if ((vol->uid != (uid_t) -1 || vol->gid != (gid_t) -1) &&
        fchown(spAtomicFileFd(file), vol->uid, vol->gid) < 0) {
        spErrorSetErrno(error, errno, "cannot set owner of '%s' to %u:%u",
                        vol->path, (unsigned int) vol->uid, (unsigned int) vol->gid);
        return NULL;
    }
    return g_steal_pointer(&file);
}


static gboolean
writeQcow2(const SpNewVolume *vol, guint64 capacity, const char *backing_file,
           const char *backing_format, gboolean replace, GError **error)
{
    g_autoptr(SpAtomicFile) file = NULL;
    SpQcow2Spec spec = {
        .virtual_size = capacity,
        .backing_file = backing_file,
        .backing_format = backing_format,
    };

    return spQcow2SpecValidate(&spec, error) &&
           (file = beginFile(vol, error)) &&
           spQcow2WriteFd(spAtomicFileFd(file), &spec, error) &&
           spAtomicFileCommit(file, replace, error);
}


static gboolean
writeRaw(const SpNewVolume *vol, GError **error)
{
    g_autoptr(SpAtomicFile) file = NULL;

    if (!(file = beginFile(vol, error)))
        return FALSE;
    if (ftruncate(spAtomicFileFd(file), vol->capacity) < 0)
        return spErrorSetErrno(error, errno, "cannot set size of '%s' to %" G_GUINT64_FORMAT
                               " bytes", vol->path, vol->capacity);
    return spAtomicFileCommit(file, FALSE, error);
}


/* The replica an instance is about to back onto must exist, made from a
 * template that has not changed since its path was chosen. */
static gboolean
ensureBackingReplica(SpPool *pool, const char *replica_path, gboolean *acquired,
                     GError **error)
{
    g_autofree char *name = spPoolReplicaTemplateName(pool, replica_path);
    g_autofree char *template_path = NULL;
    g_autofree char *expected = NULL;

    if (!name)
        return TRUE;
    template_path = g_build_filename(pool->primary, name, NULL);
    if (!(expected = spPoolInstanceBacking(pool, template_path, error)))
        return FALSE;
    if (strcmp(expected, replica_path) != 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_CHANGED,
                    "template '%s' changed while the instance was being created; try again",
                    name);
        return FALSE;
    }
    if (!spPoolReplicaEnsure(pool, template_path, replica_path, error))
        return FALSE;
    *acquired = TRUE;
    return TRUE;
}


static gboolean
createInstance(SpPool *pool, const SpNewVolume *vol, GError **error)
{
    gboolean acquired = FALSE;
    gboolean ok;

    ok = ensureBackingReplica(pool, vol->backing_path, &acquired, error) &&
         writeQcow2(vol, vol->capacity, vol->backing_path, vol->backing_format, FALSE, error);
    if (ok)
        spPoolNoteReplicaUse(pool, vol->backing_path, +1);
    /* The RAM tier evicts the replica least recently built upon first. */
    if (ok && acquired)
        utimensat(AT_FDCWD, vol->backing_path,
                  (const struct timespec[]) { { 0, UTIME_NOW }, { 0, UTIME_OMIT } }, 0);
    if (acquired)
        spPoolReplicaRelease(pool, vol->backing_path);
    return ok;
}


/* New volumes are written empty in milliseconds, or copied from their
 * source: there is no metadata to preallocate. The error is that of a
 * flag the backend does not take, which clients such as virt-install
 * answer by trying again without it. libvirt's --copy-storage-all asks
 * for a volume without a backing file with this flag: taken, it would
 * make the moved desktop a template in the tier every host shares. */
static gboolean
refusePrealloc(const SpNewVolume *vol, GError **error)
{
    if (!vol->prealloc_metadata)
        return TRUE;
    g_set_error_literal(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                        "stormpool volumes cannot have preallocated metadata: an instance "
                        "is a thin qcow2 overlay of its template, and a template gets its "
                        "data from vol-upload or vol-create-from (a desktop moves to "
                        "another host with migrate --copy-storage-inc, not "
                        "--copy-storage-all)");
    return FALSE;
}


/* The volume as it will be written: the mode of its kind if none was
 * asked for (pool.h says why they differ). */
static SpNewVolume
withDefaults(const SpNewVolume *vol)
{
    SpNewVolume full = *vol;

    if (full.mode == (mode_t) -1)
        full.mode = vol->backing_path ? SP_INSTANCE_DEFAULT_MODE : SP_TEMPLATE_DEFAULT_MODE;
    return full;
}


static gboolean
createVolume(SpPool *pool, const SpNewVolume *vol, GError **error)
{
    if (vol->backing_path)
        return createInstance(pool, vol, error);
    if (vol->format == SP_IMAGE_FORMAT_QCOW2)
        return writeQcow2(vol, vol->capacity, NULL, NULL, FALSE, error);
    return writeRaw(vol, error);
}


/* Before an instance is written, this host's record counts it, under the
 * template store's lock: no host can delete its template in between.
 * *@template names the template claimed, if any. */
static gboolean
claimTemplate(SpPool *pool, const SpNewVolume *vol, char **template, GError **error)
{
    g_autofree char *name = NULL;

    if (!vol->backing_path || !(name = spPoolTemplateOf(pool, vol->backing_path)))
        return TRUE;
    if (!spPoolHostsClaim(pool, name, error))
        return FALSE;
    *template = g_steal_pointer(&name);
    return TRUE;
}


/* The plan listed the volume as being built; it is there now, or never;
 * the record counts the file from now on, or nothing. */
static gboolean
built(SpPool *pool, const SpNewVolume *vol, const char *template, gboolean ok)
{
    spPoolIndexBuilt(pool, vol->name, ok);
    if (template)
        spPoolHostsClaimEnd(pool, template, ok);
    return ok;
}


gboolean
spPoolCreateVolume(SpPool *pool, const SpNewVolume *vol, GError **error)
{
    SpNewVolume full = withDefaults(vol);
    g_autofree char *template = NULL;
    gboolean ok;

    ok = refusePrealloc(vol, error) && claimTemplate(pool, vol, &template, error) &&
         createVolume(pool, &full, error);
    return built(pool, vol, template, ok);
}


/* An instance cloned from an instance: the overlay file is copied as it
 * is, so the clone backs onto the same template and holds the same data. */
static gboolean
cloneInstance(const SpNewVolume *vol, const SpSourceVolume *src, GError **error)
{
    g_autoptr(SpAtomicFile) file = NULL;
    int fd;
    gboolean ok;

    if ((fd = open(src->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return spErrorSetErrno(error, errno, "cannot open '%s'", src->path);
    ok = (file = beginFile(vol, error)) && spFileCopySparse(fd, spAtomicFileFd(file), error);
    close(fd);
    if (ok && vol->capacity > src->capacity)
        ok = spQemuImgResize(spAtomicFileTmpPath(file), "qcow2", vol->capacity, error);
    return ok && spAtomicFileCommit(file, FALSE, error);
}


/* A template made from any volume: its data, flattened, in the format
 * asked for. Converting data is what qemu-img is for. */
static gboolean
convertToTemplate(const SpNewVolume *vol, const SpSourceVolume *src, GError **error)
{
    g_autoptr(SpAtomicFile) file = NULL;
    const char *informat = src->format == SP_IMAGE_FORMAT_QCOW2 ? "qcow2" : "raw";
    const char *outformat = vol->format == SP_IMAGE_FORMAT_QCOW2 ? "qcow2" : "raw";

    if (!(file = beginFile(vol, error)) ||
        !spQemuImgConvert(src->path, informat, spAtomicFileTmpPath(file), outformat, error))
        return FALSE;
    if (vol->capacity > src->capacity &&
        !spQemuImgResize(spAtomicFileTmpPath(file), outformat, vol->capacity, error))
        return FALSE;
    return spAtomicFileCommit(file, FALSE, error);
}


/* A copy of an image a guest is writing would be torn. */
static gboolean
checkNoWriter(const SpSourceVolume *src, GError **error)
{
    gboolean has_writer = FALSE;

    if (!spImageHasWriter(src->path, &has_writer, error))
        return FALSE;
    if (has_writer) {
        g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                    "cannot copy '%s': a running guest or another QEMU "
                    "process is writing to it", src->name);
        return FALSE;
    }
    return TRUE;
}


static gboolean createVolumeFrom(SpPool *pool, const SpNewVolume *vol,
                                 const SpSourceVolume *src, GError **error);

gboolean
spPoolCreateVolumeFrom(SpPool *pool, const SpNewVolume *vol, const SpSourceVolume *src,
                       GError **error)
{
    SpNewVolume full = withDefaults(vol);
    g_autofree char *template = NULL;
    gboolean ok;

    ok = refusePrealloc(vol, error) && claimTemplate(pool, vol, &template, error) &&
         createVolumeFrom(pool, &full, src, error);
    return built(pool, vol, template, ok);
}


static gboolean
createVolumeFrom(SpPool *pool, const SpNewVolume *vol, const SpSourceVolume *src,
                 GError **error)
{
    g_autofree char *template = NULL;
    g_autofree char *src_template = NULL;

    if (!checkNoWriter(src, error))
        return FALSE;
    if (!vol->backing_path)
        return convertToTemplate(vol, src, error);
    if (!(template = spPoolBackingTemplateName(pool, vol->backing_path))) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "'%s' is neither a template nor a replica of this pool", vol->backing_path);
        return FALSE;
    }
    /* A clone of the template itself, as an instance of it, is a fresh
     * instance: its data is the template's. */
    if (strcmp(src->path, vol->backing_path) == 0 ||
        (spPathIsInDir(src->path, pool->primary) && strcmp(src->name, template) == 0))
        return createInstance(pool, vol, error);
    if (src->backing_path)
        src_template = spPoolBackingTemplateName(pool, src->backing_path);
    if (!src_template || strcmp(src_template, template) != 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "cannot clone '%s' as an instance of template '%s': "
                    "it is not an instance of that template", src->name, template);
        return FALSE;
    }
    /* The copy keeps the source's backing file, which may be an older
     * replica: the data is the same. */
    if (!cloneInstance(vol, src, error))
        return FALSE;
    spPoolNoteReplicaUse(pool, src->backing_path, +1);
    return TRUE;
}


/* ---- deleting ------------------------------------------------------------- */

/* A deleted template's replicas serve no new instance, and the dependents
 * check just found no instance on them: they go at once, not at the next
 * refresh, so that an emptied pool can be deleted right away. */
static void
collectTemplateReplicas(SpPool *pool, const char *template_name)
{
    g_autoptr(GPtrArray) replicas = spPoolReplicaListAll(pool, NULL);
    guint i;

    for (i = 0; replicas && i < replicas->len; i++) {
        SpReplicaInfo *replica = g_ptr_array_index(replicas, i);

        if (strcmp(replica->template_name, template_name) != 0)
            continue;
        spPoolCollectReplica(pool, replica->path);
        spPoolNoteReplicaUse(pool, replica->path, 0);
    }
}


static gboolean
deleteVolume(SpPool *pool, const char *name, const char *path, const char *backing,
             gboolean instance, GError **error)
{
    int lock = -1;

    if (!instance && !spPoolCheckTemplateChange(pool, name, path, SP_CHANGE_DELETE, error))
        return FALSE;
    if (instance && !spPoolCheckNoLayers(pool, name, path, SP_CHANGE_DELETE, error))
        return FALSE;
    if (access(path, F_OK) == 0 &&
        (lock = spPoolLockNotInUse(name, path, SP_CHANGE_DELETE, error)) < 0)
        return FALSE;
    if (unlink(path) < 0 && errno != ENOENT) {
        spErrorSetErrno(error, errno, "cannot delete volume '%s'", path);
        if (lock >= 0)
            close(lock);
        return FALSE;
    }
    if (lock >= 0)
        close(lock);
    spPoolForgetTemplateStamp(pool, path);
    spPoolIndexRemove(pool, name);
    if (!instance) {
        collectTemplateReplicas(pool, name);
        spPoolCollectVersions(pool);
        spPoolCollectHotSets(pool);
    } else if (backing) {
        spPoolCollectReplica(pool, backing);
        spPoolNoteReplicaUse(pool, backing, -1);
    }
    g_info("deleted %s '%s'", instance ? "instance" : "template", path);
    return TRUE;
}


/* A template is deleted under the template store's exclusive lock, so
 * that no host claims it between the check and the unlink; an instance
 * less is then published. */
gboolean
spPoolDeleteVolume(SpPool *pool, const char *name, const char *path,
                   const char *backing, GError **error)
{
    gboolean instance = spPoolIsInstance(pool, path);
    gboolean ok;
    int store = -1;

    if (!instance && (store = spPoolHostsLockChange(pool, error)) < 0)
        return FALSE;
    ok = deleteVolume(pool, name, path, backing, instance, error);
    if (store >= 0)
        close(store);
    if (ok && instance)
        spPoolHostsUpdate(pool);
    return ok;
}


/* ---- uploading ------------------------------------------------------------ */

/* The dependents check of a template change that happens after the call
 * (libvirt's stream or wipe), under the template store's lock, so that it
 * sees every host's claims made before. */
static gboolean
checkUnderStoreLock(SpPool *pool, const char *name, const char *path, SpChange change,
                    GError **error)
{
    gboolean ok;
    int store;

    if ((store = spPoolHostsLockChange(pool, error)) < 0)
        return FALSE;
    ok = spPoolCheckNoDependents(pool, name, path, change, error);
    close(store);
    return ok;
}


/* What depends on the template now, on this host and on others (and of
 * those, what names its file: @pinning), under the template store's
 * lock, so that every host's claims made before are seen. */
static gboolean
dependentsUnderStoreLock(SpPool *pool, const char *name, const char *path,
                         GPtrArray **local, char **remote, char **pinning, GError **error)
{
    gboolean ok;
    int store;

    if ((store = spPoolHostsLockChange(pool, error)) < 0)
        return FALSE;
    ok = (*local = spPoolTemplateDependents(pool, name, path, error)) &&
         spPoolHostsDependents(pool, name, remote, error) &&
         spPoolHostsPinning(pool, name, pinning, error);
    close(store);
    return ok;
}


static gboolean
checkUploadable(SpPool *pool, const char *name, const char *path, GError **error)
{
    g_autofree char *pending = NULL;

    if (spPoolIsInstance(pool, path)) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_STATE,
                    "cannot upload into instance '%s': upload fills templates; "
                    "an instance's data comes from its guest", name);
        return FALSE;
    }
    spPoolVersionsSettle(pool, name);
    if ((pending = spPoolVersionUploadOf(pool, name))) {
        g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                    "a new version of template '%s' is still being uploaded; try again "
                    "when that upload has finished", name);
        return FALSE;
    }
    return spPoolCheckNotUploading(pool, name, path, error);
}


/* The stream itself belongs to the storage driver: the pool only refuses
 * the upload, or registers it (pool_uploads.c) before the stream opens,
 * and says where it goes: into the template when nothing depends on it,
 * else into a new version (pool_versions.c). */
gboolean
spPoolUploadBegin(SpPool *pool, const char *name, const char *path, guint64 offset,
                  char **target, GError **error)
{
    g_autoptr(GPtrArray) local = NULL;
    g_autofree char *remote = NULL;
    g_autofree char *pinning = NULL;
    gboolean ok;

    if (!checkUploadable(pool, name, path, error))
        return FALSE;
    /* From here on, new instances of the template are refused. */
    spPoolUploadSet(pool, path, FALSE);
    ok = dependentsUnderStoreLock(pool, name, path, &local, &remote, &pinning, error);
    if (ok && (local->len > 0 || remote)) {
        /* The template itself is not written: it serves on meanwhile. */
        spPoolUploadOpened(pool, path, FALSE);
        return spPoolVersionUploadBegin(pool, name, path, local, pinning, offset, target,
                                        error);
    }
    if (!ok || !spPoolCheckNotInUse(name, path, SP_CHANGE_UPLOAD, error)) {
        /* The stream will never open: the template is free again. */
        spPoolUploadOpened(pool, path, FALSE);
        return FALSE;
    }
    spPoolForgetTemplateStamp(pool, path);
    *target = g_strdup(path);
    return TRUE;
}


/* ---- wiping and resizing ------------------------------------------------ */

static gboolean
prepareTemplateWipe(SpPool *pool, const char *name, const char *path, GError **error)
{
    if (!spPoolCheckNotUploading(pool, name, path, error) ||
        !checkUnderStoreLock(pool, name, path, SP_CHANGE_WIPE, error) ||
        !spPoolCheckNotInUse(name, path, SP_CHANGE_WIPE, error))
        return FALSE;
    spPoolForgetTemplateStamp(pool, path);
    return TRUE;
}


/* The backing file and its format of the overlay at @path, as its
 * header, not the cached definition, says they are now: a template or
 * one of its replicas (an instance), or another image of the secondary
 * tier (a layer). */
static gboolean
readOverlay(SpPool *pool, const char *path, SpImageInfo *info, char **backing,
            GError **error)
{
    g_autofree char *template = NULL;
    g_auto(SpImageInfo) binfo = { 0 };

    if (!spImageInfoRead(path, info, error))
        return FALSE;
    if (info->format != SP_IMAGE_FORMAT_QCOW2 || !info->backing_file) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_STATE,
                    "'%s' is no longer an overlay of a template", path);
        return FALSE;
    }
    *backing = spBackingFileResolve(path, info->backing_file);
    if (!spPathIsInDir(*backing, pool->secondary) &&
        !(template = spPoolBackingTemplateName(pool, *backing))) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_STATE,
                    "'%s' backs onto '%s', which is not a volume of this pool",
                    path, *backing);
        return FALSE;
    }
    /* Never guess a missing backing format: read it from the backing
     * file, which belongs to the pool. */
    if (!info->backing_format) {
        if (!spImageInfoRead(*backing, &binfo, error))
            return FALSE;
        info->backing_format = g_strdup(spImageFormatName(&binfo));
    }
    return TRUE;
}


/* The format of what a new overlay backs onto, never read from an image
 * a guest may have written (a raw template holding a qcow2 header): the
 * template's own, or qcow2 for a hot or flattened replica, which the
 * pool wrote itself. */
static char *
backingFormat(SpPool *pool, const char *backing, const char *template_path,
              const SpImageInfo *template)
{
    SpReplicaPolicy policy = SP_REPLICA_NONE;

    if (strcmp(backing, template_path) != 0 &&
        (template->backing_file ||
         (spPoolReplicaPolicy(pool, &policy, NULL) && policy == SP_REPLICA_HOT)))
        return g_strdup("qcow2");
    return g_strdup(spImageFormatName(template));
}


/* What a reset instance backs onto: the newest version of its template
 * under the pool's policy (its replica made if missing, the caller then
 * a user of it until it releases it), or for a layer what it backed onto
 * (@old, in format @old_format). *@floor is the template's size. */
static gboolean
recomposeBacking(SpPool *pool, const char *old, const char *old_format, char **backing,
                 char **format, guint64 *floor, gboolean *acquired, GError **error)
{
    g_autofree char *template = spPoolTemplateOf(pool, old);
    g_autofree char *template_path = NULL;
    g_auto(SpImageInfo) info = { 0 };

    if (!template) {
        *backing = g_strdup(old);
        *format = g_strdup(old_format);
        return TRUE;
    }
    template_path = g_build_filename(pool->primary, template, NULL);
    if (!spPoolCheckNotUploading(pool, template, template_path, error) ||
        !spImageInfoRead(template_path, &info, error) ||
        !(*backing = spPoolInstanceBacking(pool, template_path, error)) ||
        !ensureBackingReplica(pool, *backing, acquired, error))
        return FALSE;
    *floor = info.virtual_size;
    *format = backingFormat(pool, *backing, template_path, &info);
    return TRUE;
}


/* A new, empty overlay replaces the old one atomically: of the newest
 * version of its template (vol-wipe is how an instance moves onto a new
 * version), at least as big as it was. */
static gboolean
writeReset(SpPool *pool, SpNewVolume *vol, GError **error)
{
    g_auto(SpImageInfo) info = { 0 };
    g_autofree char *old = NULL;
    g_autofree char *backing = NULL;
    g_autofree char *format = NULL;
    gboolean acquired = FALSE;
    guint64 floor = 0;
    gboolean ok;

    if (!readOverlay(pool, vol->path, &info, &old, error) ||
        !recomposeBacking(pool, old, info.backing_format, &backing, &format, &floor,
                          &acquired, error)) {
        if (acquired)
            spPoolReplicaRelease(pool, backing);
        return FALSE;
    }
    ok = writeQcow2(vol, MAX(info.virtual_size, floor), backing, format, TRUE, error);
    if (ok && strcmp(old, backing) != 0) {
        spPoolNoteReplicaUse(pool, old, -1);
        spPoolNoteReplicaUse(pool, backing, +1);
    }
    if (acquired)
        spPoolReplicaRelease(pool, backing);
    if (ok)
        g_info("reset '%s' to an empty overlay of '%s'", vol->path, backing);
    return ok;
}


static gboolean
resetInstance(SpPool *pool, const char *name, const char *path, GError **error)
{
    SpNewVolume vol = { .name = name, .path = path, .mode = 0600,
                        .uid = (uid_t) -1, .gid = (gid_t) -1 };
    struct stat sb;
    int lock;
    gboolean ok;

    if (!spPoolCheckNoLayers(pool, name, path, SP_CHANGE_WIPE, error) ||
        (lock = spPoolLockNotInUse(name, path, SP_CHANGE_WIPE, error)) < 0)
        return FALSE;
    /* The new overlay keeps the old one's mode and owner. */
    if (fstat(lock, &sb) == 0) {
        vol.mode = sb.st_mode & 07777;
        vol.uid = sb.st_uid;
        vol.gid = sb.st_gid;
    }
    ok = writeReset(pool, &vol, error);
    close(lock);
    return ok;
}


static gboolean resizeTemplate(SpPool *pool, const char *name, const char *path,
                               SpImageFormat format, guint64 capacity, GError **error);

gboolean
spPoolResizeVolume(SpPool *pool, const char *name, const char *path, SpImageFormat format,
                   guint64 current, guint64 capacity, GError **error)
{
    if (capacity < current) {
        g_set_error_literal(error, SP_ERROR, SP_ERROR_OPERATION_UNSUPPORTED,
                            "stormpool volumes can only grow: shrinking would discard "
                            "guest data");
        return FALSE;
    }
    if (!resizeTemplate(pool, name, path, format, capacity, error))
        return FALSE;
    /* An instance's floor is its template's size: what the pool lists
     * follows the file. */
    spVolumeFree(spPoolRefreshVolume(pool, path, NULL));
    return TRUE;
}


static gboolean
resize(SpPool *pool, const char *name, const char *path, SpImageFormat format,
       guint64 capacity, GError **error)
{
    if (!spPoolIsInstance(pool, path) &&
        !spPoolCheckTemplateChange(pool, name, path, SP_CHANGE_RESIZE, error))
        return FALSE;
    /* qemu-img takes the image locks itself, so probing is enough here. */
    if (!spPoolCheckNotInUse(name, path, SP_CHANGE_RESIZE, error))
        return FALSE;
    if (!spPoolIsInstance(pool, path))
        spPoolForgetTemplateStamp(pool, path);
    if (format == SP_IMAGE_FORMAT_RAW) {
        if (truncate(path, capacity) < 0)
            return spErrorSetErrno(error, errno, "cannot resize '%s'", path);
        return TRUE;
    }
    if (capacity > spQcow2MaxVirtualSize(SP_QCOW2_DEFAULT_CLUSTER_BITS)) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "capacity %" G_GUINT64_FORMAT " is larger than the qcow2 limit", capacity);
        return FALSE;
    }
    return spQemuImgResize(path, "qcow2", capacity, error);
}


/* A template grows under the template store's exclusive lock: no host
 * makes an instance of it meanwhile. */
static gboolean
resizeTemplate(SpPool *pool, const char *name, const char *path, SpImageFormat format,
               guint64 capacity, GError **error)
{
    gboolean ok;
    int store;

    if (spPoolIsInstance(pool, path))
        return resize(pool, name, path, format, capacity, error);
    if ((store = spPoolHostsLockChange(pool, error)) < 0)
        return FALSE;
    ok = resize(pool, name, path, format, capacity, error);
    close(store);
    return ok;
}


/* A layer with no backing file (a full blockcopy destination, an image
 * of its own) is wiped as libvirt wipes any file, once nothing backs
 * onto it. */
static gboolean
prepareImageWipe(SpPool *pool, const char *name, const char *path, GError **error)
{
    return spPoolCheckNoLayers(pool, name, path, SP_CHANGE_WIPE, error) &&
           spPoolCheckNotInUse(name, path, SP_CHANGE_WIPE, error);
}


static gboolean
isStandaloneImage(const char *path)
{
    g_auto(SpImageInfo) info = { 0 };

    return spImageInfoRead(path, &info, NULL) && !info.backing_file;
}


gboolean
spPoolWipeVolume(SpPool *pool, const char *name, const char *path, gboolean zero,
                 gboolean *wipe_here, GError **error)
{
    *wipe_here = FALSE;
    if (!spPoolIsInstance(pool, path)) {
        *wipe_here = prepareTemplateWipe(pool, name, path, error);
        return *wipe_here;
    }
    if (isStandaloneImage(path)) {
        *wipe_here = prepareImageWipe(pool, name, path, error);
        return *wipe_here;
    }
    if (!zero) {
        g_set_error_literal(error, SP_ERROR, SP_ERROR_ARGUMENT_UNSUPPORTED,
                            "wiping an instance resets it to its template; "
                            "only the default 'zero' algorithm is supported");
        return FALSE;
    }
    return resetInstance(pool, name, path, error);
}


/* ---- reading one volume again ---------------------------------------------- */

/* A guest's start reads its volume again (libvirt's refreshVol): an
 * instance whose replica is gone (a RAM tier after a reboot, before the
 * worker made it again) gets it now, or waits for the one being made,
 * rather than a QEMU that cannot open its backing file. */
static gboolean
ensureReplicaOf(SpPool *pool, const SpVolume *volume, GError **error)
{
    g_autofree char *name = NULL;
    g_autofree char *identity = NULL;
    g_autofree char *template_path = NULL;

    if (volume->tier != SP_TIER_SECONDARY || !volume->backing_path ||
        access(volume->backing_path, F_OK) == 0 ||
        !(name = spPoolReplicaTemplateName(pool, volume->backing_path)))
        return TRUE;
    identity = g_path_get_basename(volume->backing_path);
    template_path = spPoolVersionSource(pool, name, identity);
    if (spPoolReplicaRebuild(pool, template_path, volume->backing_path, error))
        return TRUE;
    g_prefix_error(error, "instance '%s' backs onto the missing replica '%s' of template "
                   "'%s', which cannot be made again: ", volume->name,
                   volume->backing_path, name);
    return FALSE;
}


SpVolume *
spPoolRefreshVolume(SpPool *pool, const char *path, GError **error)
{
    SpTier tier = spPoolIsInstance(pool, path) ? SP_TIER_SECONDARY : SP_TIER_PRIMARY;
    g_autoptr(SpVolume) volume = spVolumeRead(path, tier, error);

    const char *reason;

    if (!volume)
        return NULL;
    if ((reason = spPoolVolumeClassify(pool, volume))) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_STATE,
                    "'%s' is no longer a volume of this pool: %s", path, reason);
        return NULL;
    }
    if (!ensureReplicaOf(pool, volume, error))
        return NULL;
    spPoolIndexUpdate(pool, volume);
    return g_steal_pointer(&volume);
}
