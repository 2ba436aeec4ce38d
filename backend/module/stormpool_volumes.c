/*
 * stormpool_volumes.c: templates and instances of a stormpool pool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <config.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "storage_backend.h"
#include "storage_conf.h"
#include "storage_source_conf.h"
#include "storage_util.h"
#include "virerror.h"
#include "virfile.h"
#include "virlog.h"
#include "virstorageobj.h"

#include "stormpool/atomic_file.h"
#include "stormpool/error.h"
#include "stormpool/file_copy.h"
#include "stormpool/image_header.h"
#include "stormpool/image_lock.h"
#include "stormpool/pool_namespace.h"
#include "stormpool/qcow2_overlay.h"
#include "stormpool/template_index.h"
#include "stormpool/template_replica.h"
#include "stormpool/tier_layout.h"
#include "stormpool/volume_name.h"
#include "stormpool_module.h"
#include "stormpool_replicas.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

VIR_LOG_INIT("storage.storage_backend_stormpool.volumes");

/* How many dependents an error message names before "and N more". */
#define STORMPOOL_DEPENDENTS_LISTED 5


/* What is refused, so that each refusal is one whole, translatable
 * sentence. */
typedef enum {
    STORMPOOL_CHANGE_DELETE,
    STORMPOOL_CHANGE_WIPE,
    STORMPOOL_CHANGE_RESIZE,
    STORMPOOL_CHANGE_UPLOAD,
} StormpoolChange;


/* libvirt's storage driver knows nothing of domains, so a volume in use is
 * recognised the way QEMU itself protects images: by its image locks. That
 * also covers a QEMU started by hand. */
static int
stormpoolReportInUse(virStorageVolDef *vol,
                     StormpoolChange change)
{
    switch (change) {
    case STORMPOOL_CHANGE_DELETE:
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot delete '%s': it is in use by a running guest or "
                         "another QEMU process (its image is locked)"), vol->name);
        break;
    case STORMPOOL_CHANGE_WIPE:
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot wipe '%s': it is in use by a running guest or "
                         "another QEMU process (its image is locked)"), vol->name);
        break;
    case STORMPOOL_CHANGE_RESIZE:
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot resize '%s': it is in use by a running guest or "
                         "another QEMU process (its image is locked)"), vol->name);
        break;
    case STORMPOOL_CHANGE_UPLOAD:
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot upload into '%s': it is in use by a running guest or "
                         "another QEMU process (its image is locked)"), vol->name);
        break;
    }
    return -1;
}


static int
stormpoolReportDependents(virStorageVolDef *template,
                          StormpoolChange change,
                          guint count,
                          const char *names)
{
    switch (change) {
    case STORMPOOL_CHANGE_DELETE:
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot delete template '%s': %u instance(s) depend on it: %s"),
                       template->name, count, names);
        break;
    case STORMPOOL_CHANGE_WIPE:
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot wipe template '%s': %u instance(s) depend on it: %s"),
                       template->name, count, names);
        break;
    case STORMPOOL_CHANGE_RESIZE:
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot resize template '%s': %u instance(s) depend on it: %s"),
                       template->name, count, names);
        break;
    case STORMPOOL_CHANGE_UPLOAD:
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot upload into template '%s': %u instance(s) depend on it: %s"),
                       template->name, count, names);
        break;
    }
    return -1;
}


static int
stormpoolCheckNotInUse(virStorageVolDef *vol,
                       StormpoolChange change)
{
    g_autoptr(GError) err = NULL;
    gboolean in_use = FALSE;

    if (!spImageInUse(vol->target.path, &in_use, &err)) {
        if (err->code == SP_ERROR_NOT_FOUND)
            return 0;
        return stormpoolReportError(err);
    }
    if (in_use)
        return stormpoolReportInUse(vol, change);
    return 0;
}


static int
stormpoolCheckNoWriter(virStorageVolDef *vol)
{
    g_autoptr(GError) err = NULL;
    gboolean has_writer = FALSE;

    if (!spImageHasWriter(vol->target.path, &has_writer, &err))
        return stormpoolReportError(err);
    if (has_writer) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("cannot copy '%s': a running guest or another QEMU "
                         "process is writing to it"), vol->name);
        return -1;
    }
    return 0;
}


/* Like stormpoolCheckNotInUse, but keeps QEMU out until the returned
 * descriptor is closed, for changes that must not race a guest start. */
static int
stormpoolLockNotInUse(virStorageVolDef *vol,
                      StormpoolChange change)
{
    g_autoptr(GError) err = NULL;
    int fd;

    if ((fd = spImageLockExclusive(vol->target.path, &err)) >= 0)
        return fd;
    if (err->code == SP_ERROR_IN_USE)
        return stormpoolReportInUse(vol, change);
    return stormpoolReportError(err);
}


/* ---- volume creation -------------------------------------------------- */

/* Names are unique across both tiers, also for files that appeared behind
 * libvirt's back since the last refresh. */
static int
stormpoolCheckNameFree(virStoragePoolObj *pool,
                       const char *name)
{
    const char *dirs[] = { stormpoolPrimary(pool), stormpoolSecondary(pool) };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(dirs); i++) {
        g_autofree char *path = g_build_filename(dirs[i], name, NULL);
        struct stat sb;

        if (lstat(path, &sb) == 0) {
            virReportError(VIR_ERR_STORAGE_VOL_EXIST,
                           _("a file named '%s' already exists in the %s tier '%s'"),
                           name, spTierName(i == 0 ? SP_TIER_PRIMARY : SP_TIER_SECONDARY),
                           dirs[i]);
            return -1;
        }
    }
    return 0;
}


static virStorageVolDef *
stormpoolFindBacking(virStoragePoolObj *pool,
                     const char *spec)
{
    g_autofree char *clean = NULL;
    virStorageVolDef *vol;

    if (!strchr(spec, '/'))
        return virStorageVolDefFindByName(pool, spec);

    clean = virFileSanitizePath(spec);
    if ((vol = virStorageVolDefFindByPath(pool, clean)))
        return vol;
    return virStorageVolDefFindByKey(pool, clean);
}


static int
stormpoolCheckNotUploading(virStorageVolDef *template)
{
    if (!stormpoolTemplateUploading(template->target.path))
        return 0;
    virReportError(VIR_ERR_OPERATION_INVALID,
                   _("template '%s' is still being written by vol-upload; try again "
                     "when the upload has finished"), template->name);
    return -1;
}


static virStorageVolDef *
stormpoolLookupTemplate(virStoragePoolObj *pool,
                        const char *spec)
{
    virStoragePoolDef *def = virStoragePoolObjGetDef(pool);
    virStorageVolDef *template = stormpoolFindBacking(pool, spec);

    if (!template) {
        virReportError(VIR_ERR_NO_STORAGE_VOL,
                       _("backing volume '%s' is not a template of pool '%s' "
                         "(templates are the volumes in '%s')"),
                       spec, def->name, def->source.dir);
        return NULL;
    }
    if (stormpoolVolIsInstance(pool, template)) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("backing volume '%s' is an instance; an instance must "
                         "back onto a template in the primary tier '%s'"),
                       template->name, def->source.dir);
        return NULL;
    }
    if (template->building) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("template '%s' is still being created"), template->name);
        return NULL;
    }
    if (stormpoolCheckNotUploading(template) < 0)
        return NULL;
    return template;
}


static int
stormpoolCheckCapacity(virStorageVolDef *vol)
{
    guint64 limit = vol->target.format == VIR_STORAGE_FILE_QCOW2
        ? spQcow2MaxVirtualSize(SP_QCOW2_DEFAULT_CLUSTER_BITS) : (guint64) G_MAXINT64;

    if (vol->target.capacity > limit) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("capacity %llu of volume '%s' is larger than the %s limit of %llu bytes"),
                       vol->target.capacity, vol->name,
                       virStorageFileFormatTypeToString(vol->target.format),
                       (unsigned long long) limit);
        return -1;
    }
    return 0;
}


/* Where an instance of @template backs onto under the pool's policy. */
static char *
stormpoolInstanceBacking(virStoragePoolObj *pool,
                         virStorageVolDef *template)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *identity = NULL;
    SpReplicaPolicy policy;

    if (stormpoolReplicaPolicy(pool, &policy) < 0)
        return NULL;
    if (policy == SP_REPLICA_NONE)
        return g_strdup(template->target.path);
    if (!(identity = spReplicaIdentity(template->target.path, &err))) {
        stormpoolReportError(err);
        return NULL;
    }
    return spReplicaPath(stormpoolSecondary(pool), template->name, identity);
}


static int
stormpoolPrepareInstance(virStoragePoolObj *pool,
                         virStorageVolDef *vol)
{
    virStorageSource *backing = vol->target.backingStore;
    virStorageVolDef *template;
    g_autofree char *replica_of = NULL;

    if (vol->target.format != VIR_STORAGE_FILE_QCOW2) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED,
                       _("instance '%s' must be a qcow2 overlay, not %s"),
                       vol->name, virStorageFileFormatTypeToString(vol->target.format));
        return -1;
    }
    if (!backing->path) {
        virReportError(VIR_ERR_XML_ERROR, "%s",
                       _("<backingStore> of an instance needs a <path>"));
        return -1;
    }
    /* vol-clone hands over the source instance's backing file, which may
     * be a replica: stand for its template. */
    if ((replica_of = spReplicaTemplateName(stormpoolSecondary(pool), backing->path))) {
        g_free(backing->path);
        backing->path = g_steal_pointer(&replica_of);
    }
    if (!(template = stormpoolLookupTemplate(pool, backing->path)))
        return -1;

    /* The volume XML parser turns an omitted backing format into qcow2, so
     * only an explicit raw for a qcow2 template is a real contradiction. */
    if (backing->format == VIR_STORAGE_FILE_RAW &&
        template->target.format != VIR_STORAGE_FILE_RAW) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("backing format 'raw' does not match template '%s', which is %s"),
                       template->name,
                       virStorageFileFormatTypeToString(template->target.format));
        return -1;
    }
    backing->format = template->target.format;
    g_free(backing->path);
    if (!(backing->path = stormpoolInstanceBacking(pool, template)))
        return -1;
    /* A replica of a template that has a backing file is flattened. */
    if (template->target.backingStore && STRNEQ(backing->path, template->target.path))
        backing->format = VIR_STORAGE_FILE_QCOW2;

    if (vol->target.capacity == 0)
        vol->target.capacity = template->target.capacity;
    if (vol->target.capacity < template->target.capacity) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("capacity %llu of instance '%s' is smaller than its template '%s' (%llu bytes)"),
                       vol->target.capacity, vol->name, template->name,
                       template->target.capacity);
        return -1;
    }

    vol->target.path = g_build_filename(stormpoolSecondary(pool), vol->name, NULL);
    return 0;
}


static int
stormpoolPrepareTemplate(virStoragePoolObj *pool,
                         virStorageVolDef *vol)
{
    if (vol->target.capacity == 0) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("template '%s' needs a capacity"), vol->name);
        return -1;
    }
    vol->target.path = g_build_filename(stormpoolPrimary(pool), vol->name, NULL);
    return 0;
}


int
stormpoolCreateVol(virStoragePoolObj *pool,
                   virStorageVolDef *vol)
{
    g_autoptr(GError) err = NULL;

    if (!spVolumeNameValidate(vol->name, &err))
        return stormpoolReportError(err);

    if (vol->target.format != VIR_STORAGE_FILE_QCOW2 &&
        vol->target.format != VIR_STORAGE_FILE_RAW) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED,
                       _("unsupported volume format '%s': stormpool volumes are qcow2 or raw"),
                       virStorageFileFormatTypeToString(vol->target.format));
        return -1;
    }
    if (vol->target.encryption) {
        virReportError(VIR_ERR_CONFIG_UNSUPPORTED, "%s",
                       _("stormpool does not support encrypted volumes"));
        return -1;
    }
    if (stormpoolCheckNameFree(pool, vol->name) < 0)
        return -1;

    vol->type = VIR_STORAGE_VOL_FILE;
    g_clear_pointer(&vol->target.path, g_free);
    if (vol->target.backingStore) {
        if (stormpoolPrepareInstance(pool, vol) < 0)
            return -1;
    } else if (stormpoolPrepareTemplate(pool, vol) < 0) {
        return -1;
    }
    if (stormpoolCheckCapacity(vol) < 0)
        return -1;

    g_free(vol->key);
    vol->key = g_strdup(vol->target.path);
    return 0;
}


static mode_t
stormpoolVolMode(virStorageVolDef *vol)
{
    if (!vol->target.perms || vol->target.perms->mode == (mode_t)-1)
        return VIR_STORAGE_DEFAULT_VOL_PERM_MODE;
    return vol->target.perms->mode;
}


/* Open the temporary file a volume is written to, owned as requested. */
static SpAtomicFile *
stormpoolBeginVolFile(virStorageVolDef *vol)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SpAtomicFile) file = NULL;
    uid_t uid = vol->target.perms ? vol->target.perms->uid : (uid_t)-1;
    gid_t gid = vol->target.perms ? vol->target.perms->gid : (gid_t)-1;

    if (!(file = spAtomicFileBegin(vol->target.path, stormpoolVolMode(vol), &err))) {
        stormpoolReportError(err);
        return NULL;
    }
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
        fchown(spAtomicFileFd(file), uid, gid) < 0) {
        virReportSystemError(errno, _("cannot set owner of '%s' to %u:%u"),
                             vol->target.path, (unsigned int) uid, (unsigned int) gid);
        return NULL;
    }
    return g_steal_pointer(&file);
}


static int
stormpoolCommitVolFile(SpAtomicFile *file,
                       bool replace)
{
    g_autoptr(GError) err = NULL;

    if (!spAtomicFileCommit(file, replace, &err))
        return stormpoolReportError(err);
    return 0;
}


static int
stormpoolWriteQcow2(virStorageVolDef *vol,
                    unsigned long long capacity,
                    const char *backing_file,
                    const char *backing_format,
                    bool replace)
{
    g_autoptr(SpAtomicFile) file = NULL;
    g_autoptr(GError) err = NULL;
    SpQcow2Spec spec = {
        .virtual_size = capacity,
        .backing_file = backing_file,
        .backing_format = backing_format,
    };

    if (!spQcow2SpecValidate(&spec, &err))
        return stormpoolReportError(err);
    if (!(file = stormpoolBeginVolFile(vol)))
        return -1;
    if (!spQcow2WriteFd(spAtomicFileFd(file), &spec, &err))
        return stormpoolReportError(err);
    return stormpoolCommitVolFile(file, replace);
}


static int
stormpoolWriteRaw(virStorageVolDef *vol)
{
    g_autoptr(SpAtomicFile) file = NULL;

    if (!(file = stormpoolBeginVolFile(vol)))
        return -1;
    if (ftruncate(spAtomicFileFd(file), vol->target.capacity) < 0) {
        virReportSystemError(errno, _("cannot set size of '%s' to %llu bytes"),
                             vol->target.path, vol->target.capacity);
        return -1;
    }
    return stormpoolCommitVolFile(file, false);
}


/* The replica an instance is about to back onto must exist, made from a
 * template that has not changed since createVol named the replica. */
static int
stormpoolEnsureBackingReplica(virStoragePoolObj *pool,
                              const char *replica_path,
                              bool *acquired)
{
    g_autofree char *name = spReplicaTemplateName(stormpoolSecondary(pool), replica_path);
    g_autofree char *template_path = NULL;
    g_autofree char *identity = NULL;
    g_autofree char *expected = NULL;
    g_autoptr(GError) err = NULL;
    SpReplicaPolicy policy;

    if (!name)
        return 0;
    template_path = g_build_filename(stormpoolPrimary(pool), name, NULL);
    if (!(identity = spReplicaIdentity(template_path, &err)))
        return stormpoolReportError(err);
    expected = spReplicaPath(stormpoolSecondary(pool), name, identity);
    if (STRNEQ(expected, replica_path)) {
        virReportError(VIR_ERR_OPERATION_FAILED,
                       _("template '%s' changed while the instance was being created; try again"),
                       name);
        return -1;
    }
    if (stormpoolReplicaPolicy(pool, &policy) < 0 ||
        stormpoolReplicaEnsure(template_path, replica_path, policy) < 0)
        return -1;
    *acquired = true;
    return 0;
}


int
stormpoolBuildVol(virStoragePoolObj *pool,
                  virStorageVolDef *vol,
                  unsigned int flags)
{
    virStorageSource *backing = vol->target.backingStore;

    virCheckFlags(0, -1);

    if (backing) {
        /* The voldef is a shallow copy shared with the pool's list. */
        g_autofree char *path = g_strdup(backing->path);
        bool acquired = false;
        int rc = -1;

        if (stormpoolEnsureBackingReplica(pool, path, &acquired) == 0 &&
            stormpoolWriteQcow2(vol, vol->target.capacity, path,
                                virStorageFileFormatTypeToString(backing->format),
                                false) == 0) {
            stormpoolNoteReplicaUse(pool, path, +1);
            rc = 0;
        }
        if (acquired)
            stormpoolReplicaRelease(path);
        return rc;
    }
    if (vol->target.format == VIR_STORAGE_FILE_QCOW2)
        return stormpoolWriteQcow2(vol, vol->target.capacity, NULL, NULL, false);
    return stormpoolWriteRaw(vol);
}


/* An instance cloned from an instance: the overlay file is copied as it
 * is, so the clone backs onto the same template and holds the same data. */
static int
stormpoolCloneInstance(virStorageVolDef *vol,
                       virStorageVolDef *inputvol)
{
    g_autoptr(SpAtomicFile) file = NULL;
    g_autoptr(GError) err = NULL;
    VIR_AUTOCLOSE src = -1;

    if ((src = open(inputvol->target.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        virReportSystemError(errno, _("cannot open '%s'"), inputvol->target.path);
        return -1;
    }
    if (!(file = stormpoolBeginVolFile(vol)))
        return -1;
    if (!spFileCopySparse(src, spAtomicFileFd(file), &err))
        return stormpoolReportError(err);
    if (vol->target.capacity > inputvol->target.capacity &&
        stormpoolQemuImgResize(spAtomicFileTmpPath(file), "qcow2", vol->target.capacity) < 0)
        return -1;
    return stormpoolCommitVolFile(file, false);
}


/* A template made from any volume: its data, flattened, in the format
 * asked for. Converting data is what qemu-img is for. */
static int
stormpoolConvertToTemplate(virStorageVolDef *vol,
                           virStorageVolDef *inputvol)
{
    g_autoptr(SpAtomicFile) file = NULL;
    const char *informat = virStorageFileFormatTypeToString(inputvol->target.format);
    const char *outformat = virStorageFileFormatTypeToString(vol->target.format);

    if (!(file = stormpoolBeginVolFile(vol)))
        return -1;
    if (stormpoolQemuImgConvert(inputvol->target.path, informat,
                                spAtomicFileTmpPath(file), outformat) < 0)
        return -1;
    if (vol->target.capacity > inputvol->target.capacity &&
        stormpoolQemuImgResize(spAtomicFileTmpPath(file), outformat,
                               vol->target.capacity) < 0)
        return -1;
    return stormpoolCommitVolFile(file, false);
}


int
stormpoolBuildVolFrom(virStoragePoolObj *pool,
                      virStorageVolDef *vol,
                      virStorageVolDef *inputvol,
                      unsigned int flags)
{
    virStorageSource *backing = vol->target.backingStore;
    virStorageSource *inbacking = inputvol->target.backingStore;
    g_autofree char *template = NULL;
    g_autofree char *input_template = NULL;

    virCheckFlags(0, -1);

    /* A copy of an image a guest is writing would be torn. */
    if (stormpoolCheckNoWriter(inputvol) < 0)
        return -1;

    if (!backing)
        return stormpoolConvertToTemplate(vol, inputvol);

    if (!(template = stormpoolBackingTemplateName(pool, backing->path))) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("'%s' is neither a template nor a replica of this pool"),
                       backing->path);
        return -1;
    }

    /* A clone of the template itself, as an instance of it, is a fresh
     * instance: its data is the template's. */
    if (STREQ(inputvol->target.path, backing->path) ||
        (spPathIsInDir(inputvol->target.path, stormpoolPrimary(pool)) &&
         STREQ(inputvol->name, template)))
        return stormpoolBuildVol(pool, vol, 0);

    if (inbacking && inbacking->path)
        input_template = stormpoolBackingTemplateName(pool, inbacking->path);
    if (!input_template || STRNEQ(input_template, template)) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("cannot clone '%s' as an instance of template '%s': "
                         "it is not an instance of that template"),
                       inputvol->name, template);
        return -1;
    }
    /* The copy keeps the source's backing file, which may be an older
     * replica: the data is the same. */
    if (stormpoolCloneInstance(vol, inputvol) < 0)
        return -1;
    stormpoolNoteReplicaUse(pool, inbacking->path, +1);
    return 0;
}


/* ---- volume lifecycle ------------------------------------------------- */

int
stormpoolRefreshVol(virStoragePoolObj *pool G_GNUC_UNUSED,
                    virStorageVolDef *vol)
{
    g_auto(SpImageInfo) info = { 0 };

    return stormpoolVolUpdateFromFile(vol, -1, NULL, &info);
}


/* Refuse to change @template while instances depend on it. */
static int
stormpoolCheckNoDependents(virStoragePoolObj *pool,
                           virStorageVolDef *template,
                           StormpoolChange change)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) names = NULL;
    g_autofree char *summary = NULL;

    if (!(names = spTemplateDependents(stormpoolSecondary(pool),
                                       template->target.path, &err)))
        return stormpoolReportError(err);
    if (names->len == 0)
        return 0;

    summary = spTemplateDependentsSummary(names, STORMPOOL_DEPENDENTS_LISTED);
    return stormpoolReportDependents(template, change, names->len, summary);
}


/* A replica goes with the last instance that backs onto it. Failing to
 * remove it is not an error of the deletion: refresh tries again. */
static void
stormpoolCollectReplica(virStoragePoolObj *pool,
                        const char *backing_path)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *name = spReplicaTemplateName(stormpoolSecondary(pool), backing_path);

    if (!name || !stormpoolReplicaUnused(pool, backing_path))
        return;
    if (!spReplicaRemove(backing_path, &err)) {
        VIR_WARN("cannot remove unused replica '%s': %s", backing_path, err->message);
        return;
    }
    VIR_INFO("removed replica '%s' of template '%s': nothing uses it any more",
             backing_path, name);
}


/* A deleted template's replicas serve no new instance, and the dependents
 * check just found no instance on them: they go at once, not at the next
 * refresh, so that an emptied pool can be deleted right away. */
static void
stormpoolCollectTemplateReplicas(virStoragePoolObj *pool,
                                 const char *template_name)
{
    g_autoptr(GPtrArray) replicas = spReplicaList(stormpoolSecondary(pool), NULL);
    guint i;

    for (i = 0; replicas && i < replicas->len; i++) {
        SpReplicaInfo *replica = g_ptr_array_index(replicas, i);

        if (STRNEQ(replica->template_name, template_name))
            continue;
        stormpoolCollectReplica(pool, replica->path);
        stormpoolNoteReplicaUse(pool, replica->path, 0);
    }
}


int
stormpoolDeleteVol(virStoragePoolObj *pool,
                   virStorageVolDef *vol,
                   unsigned int flags)
{
    VIR_AUTOCLOSE lock = -1;

    virCheckFlags(0, -1);

    if (!stormpoolVolIsInstance(pool, vol) &&
        (stormpoolCheckNotUploading(vol) < 0 ||
         stormpoolCheckNoDependents(pool, vol, STORMPOOL_CHANGE_DELETE) < 0))
        return -1;
    if (virFileExists(vol->target.path) &&
        (lock = stormpoolLockNotInUse(vol, STORMPOOL_CHANGE_DELETE)) < 0)
        return -1;

    if (unlink(vol->target.path) < 0 && errno != ENOENT) {
        virReportSystemError(errno, _("cannot delete volume '%s'"), vol->target.path);
        return -1;
    }
    stormpoolForgetTemplateStamp(pool, vol->target.path);
    if (!stormpoolVolIsInstance(pool, vol))
        stormpoolCollectTemplateReplicas(pool, vol->name);
    else if (vol->target.backingStore && vol->target.backingStore->path) {
        stormpoolCollectReplica(pool, vol->target.backingStore->path);
        stormpoolNoteReplicaUse(pool, vol->target.backingStore->path, -1);
    }
    VIR_INFO("deleted %s '%s'",
             stormpoolVolIsInstance(pool, vol) ? "instance" : "template",
             vol->target.path);
    return 0;
}


/* Wiping an instance returns it to its template's pristine state: a new,
 * empty overlay of the same size replaces the old one atomically. */
static int
stormpoolResetInstance(virStoragePoolObj *pool,
                       virStorageVolDef *vol)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *backing = NULL;
    g_autofree char *template = NULL;
    g_auto(SpImageInfo) info = { 0 };
    VIR_AUTOCLOSE lock = -1;

    if ((lock = stormpoolLockNotInUse(vol, STORMPOOL_CHANGE_WIPE)) < 0)
        return -1;

    /* The header, not the cached definition, says what the overlay is now. */
    if (!spImageInfoRead(vol->target.path, &info, &err))
        return stormpoolReportError(err);
    if (info.format != SP_IMAGE_FORMAT_QCOW2 || !info.backing_file) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("'%s' is no longer an overlay of a template"), vol->target.path);
        return -1;
    }
    backing = spBackingFileResolve(vol->target.path, info.backing_file);
    if (!(template = stormpoolBackingTemplateName(pool, backing))) {
        virReportError(VIR_ERR_OPERATION_INVALID,
                       _("'%s' backs onto '%s', which is not a template of this pool"),
                       vol->target.path, backing);
        return -1;
    }
    /* Never guess a missing backing format: read it from the backing
     * file, which belongs to the pool. */
    if (!info.backing_format) {
        g_auto(SpImageInfo) binfo = { 0 };

        if (!spImageInfoRead(backing, &binfo, &err))
            return stormpoolReportError(err);
        info.backing_format = g_strdup(spImageFormatName(&binfo));
    }
    if (stormpoolWriteQcow2(vol, info.virtual_size, backing, info.backing_format,
                            true) < 0)
        return -1;
    VIR_INFO("reset instance '%s' to template '%s'", vol->target.path, backing);
    return 0;
}


int
stormpoolWipeVol(virStoragePoolObj *pool,
                 virStorageVolDef *vol,
                 unsigned int algorithm,
                 unsigned int flags)
{
    if (!stormpoolVolIsInstance(pool, vol)) {
        if (stormpoolCheckNotUploading(vol) < 0 ||
            stormpoolCheckNoDependents(pool, vol, STORMPOOL_CHANGE_WIPE) < 0 ||
            stormpoolCheckNotInUse(vol, STORMPOOL_CHANGE_WIPE) < 0)
            return -1;
        stormpoolForgetTemplateStamp(pool, vol->target.path);
        return virStorageBackendVolWipeLocal(pool, vol, algorithm, flags);
    }

    virCheckFlags(0, -1);
    if (algorithm != VIR_STORAGE_VOL_WIPE_ALG_ZERO) {
        virReportError(VIR_ERR_ARGUMENT_UNSUPPORTED, "%s",
                       _("wiping an instance resets it to its template; "
                         "only the default 'zero' algorithm is supported"));
        return -1;
    }
    return stormpoolResetInstance(pool, vol);
}


int
stormpoolResizeVol(virStoragePoolObj *pool,
                   virStorageVolDef *vol,
                   unsigned long long capacity,
                   unsigned int flags)
{
    virCheckFlags(VIR_STORAGE_VOL_RESIZE_DELTA |
                  VIR_STORAGE_VOL_RESIZE_SHRINK, -1);

    if (!stormpoolVolIsInstance(pool, vol) &&
        (stormpoolCheckNotUploading(vol) < 0 ||
         stormpoolCheckNoDependents(pool, vol, STORMPOOL_CHANGE_RESIZE) < 0))
        return -1;
    /* qemu-img takes the image locks itself, so probing is enough here. */
    if (stormpoolCheckNotInUse(vol, STORMPOOL_CHANGE_RESIZE) < 0)
        return -1;
    if (!stormpoolVolIsInstance(pool, vol))
        stormpoolForgetTemplateStamp(pool, vol->target.path);

    if (capacity < vol->target.capacity) {
        virReportError(VIR_ERR_OPERATION_UNSUPPORTED, "%s",
                       _("stormpool volumes can only grow: shrinking would discard guest data"));
        return -1;
    }
    if (vol->target.format == VIR_STORAGE_FILE_RAW) {
        if (truncate(vol->target.path, capacity) < 0) {
            virReportSystemError(errno, _("cannot resize '%s'"), vol->target.path);
            return -1;
        }
        return 0;
    }
    if (capacity > spQcow2MaxVirtualSize(SP_QCOW2_DEFAULT_CLUSTER_BITS)) {
        virReportError(VIR_ERR_INVALID_ARG,
                       _("capacity %llu is larger than the qcow2 limit"), capacity);
        return -1;
    }
    return stormpoolQemuImgResize(vol->target.path, "qcow2", capacity);
}


int
stormpoolUploadVol(virStoragePoolObj *pool,
                   virStorageVolDef *vol,
                   virStreamPtr stream,
                   unsigned long long offset,
                   unsigned long long len,
                   unsigned int flags)
{
    int rc;

    if (stormpoolVolIsInstance(pool, vol)) {
        virReportError(VIR_ERR_OPERATION_UNSUPPORTED,
                       _("cannot upload into instance '%s': upload fills templates; "
                         "an instance's data comes from its guest"),
                       vol->name);
        return -1;
    }
    if (stormpoolCheckNotUploading(vol) < 0)
        return -1;
    /* From here on, new instances of the template are refused. */
    stormpoolUploadOpening(vol->target.path);
    if (stormpoolCheckNoDependents(pool, vol, STORMPOOL_CHANGE_UPLOAD) < 0 ||
        stormpoolCheckNotInUse(vol, STORMPOOL_CHANGE_UPLOAD) < 0) {
        stormpoolUploadOpened(vol->target.path, false);
        return -1;
    }
    stormpoolForgetTemplateStamp(pool, vol->target.path);
    rc = virStorageBackendVolUploadLocal(pool, vol, stream, offset, len, flags);
    stormpoolUploadOpened(vol->target.path, rc == 0);
    return rc;
}
