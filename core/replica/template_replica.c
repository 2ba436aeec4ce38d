/*
 * template_replica.c: copies of templates kept in the secondary tier
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util/atomic_file.h"
#include "stormpool/error.h"
#include "util/dir.h"
#include "util/file_copy.h"
#include "util/size_format.h"
#include "replica/template_replica.h"
#include "fs/volume_name.h"

static const char *const policyNames[] = {
    [SP_REPLICA_AUTO] = "auto",
    [SP_REPLICA_NONE] = "none",
    [SP_REPLICA_COPY] = "copy",
    [SP_REPLICA_LINK] = "link",
    [SP_REPLICA_HOT] = "hot",
};


const char *
spReplicaPolicyName(SpReplicaPolicy policy)
{
    return policyNames[policy];
}


gboolean
spReplicaPolicyParse(const char *name, SpReplicaPolicy *policy)
{
    size_t i;

    for (i = 0; name && i < G_N_ELEMENTS(policyNames); i++) {
        if (strcmp(name, policyNames[i]) == 0) {
            *policy = i;
            return TRUE;
        }
    }
    return FALSE;
}


static char *
identityOf(const char *template_path, gboolean with_device, GError **error)
{
    struct stat sb;
    g_autofree char *key = NULL;
    g_autofree char *digest = NULL;

    if (stat(template_path, &sb) < 0) {
        spErrorSetErrno(error, errno, "cannot stat template '%s'", template_path);
        return NULL;
    }
    key = g_strdup_printf("%ju:%ju:%jd:%jd.%09ld",
                          with_device ? (uintmax_t) sb.st_dev : 0, (uintmax_t) sb.st_ino,
                          (intmax_t) sb.st_size, (intmax_t) sb.st_mtim.tv_sec,
                          sb.st_mtim.tv_nsec);
    digest = g_compute_checksum_for_string(G_CHECKSUM_SHA256, key, -1);
    return g_strndup(digest, 16);
}


char *
spReplicaIdentity(const char *template_path, GError **error)
{
    return identityOf(template_path, TRUE, error);
}


char *
spReplicaStoreIdentity(const char *template_path, GError **error)
{
    return identityOf(template_path, FALSE, error);
}


char *
spReplicaPath(const char *secondary, const char *template_name,
              const char *identity)
{
    return g_build_filename(secondary, SP_REPLICA_DIR, template_name, identity, NULL);
}


#define IDENTITY_LENGTH 16

gboolean
spReplicaIsIdentity(const char *name)
{
    size_t i;

    for (i = 0; name[i]; i++) {
        if (!g_ascii_isxdigit(name[i]) || g_ascii_isupper(name[i]))
            return FALSE;
    }
    return i == IDENTITY_LENGTH;
}


/* Only names this pool could have made: a valid volume name (so no '..'
 * or '/') and an identity of 16 lower-case hex digits. Paths come from
 * overlay headers and directory listings, which anyone able to write the
 * tier can shape, and garbage collection unlinks what passes here. */
char *
spIdentityPathTemplateName(const char *root, const char *path)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *parent = g_path_get_dirname(dir);
    g_autofree char *identity = g_path_get_basename(path);
    g_autofree char *name = g_path_get_basename(dir);

    if (strcmp(parent, root) != 0 || !spReplicaIsIdentity(identity) ||
        !spVolumeNameValidate(name, NULL))
        return NULL;
    return g_steal_pointer(&name);
}


char *
spReplicaTemplateName(const char *secondary, const char *path)
{
    g_autofree char *root = g_build_filename(secondary, SP_REPLICA_DIR, NULL);

    return spIdentityPathTemplateName(root, path);
}


static gboolean fsyncDir(const char *path, GError **error);

static gboolean
makeReplicaDir(const char *replica_path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(replica_path);
    g_autofree char *root = g_path_get_dirname(dir);
    gboolean fresh = !g_file_test(dir, G_FILE_TEST_IS_DIR);

    /* Hidden, but traversable: QEMU may run as another user, and libvirt
     * hands it the replica file (chowning files, never directories). */
    if (g_mkdir_with_parents(dir, 0711) < 0)
        return spErrorSetErrno(error, errno, "cannot create replica directory '%s'", dir);
    /* New directories must survive a power loss with the overlays that
     * will back onto their files. */
    return !fresh || (fsyncDir(dir, error) && fsyncDir(root, error));
}


static gboolean
fsyncDir(const char *path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return spErrorSetErrno(error, errno, "cannot open directory '%s'", dir);
    rc = fsync(fd);
    close(fd);
    if (rc < 0)
        return spErrorSetErrno(error, errno, "cannot fsync directory '%s'", dir);
    return TRUE;
}


static gboolean
createLink(const char *template_path, const char *replica_path, GError **error)
{
    /* link() never replaces an existing name and is atomic by itself. */
    if (link(template_path, replica_path) < 0) {
        int err = errno;
        if (err == EEXIST) {
            g_set_error(error, SP_ERROR, SP_ERROR_EXISTS,
                        "replica '%s' already exists", replica_path);
            return FALSE;
        }
        if (err == EXDEV) {
            g_set_error(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                        "cannot hard-link template '%s' into '%s': the tiers "
                        "are on different file systems", template_path, replica_path);
            return FALSE;
        }
        return spErrorSetErrno(error, err, "cannot link replica '%s'", replica_path);
    }
    return fsyncDir(replica_path, error);
}


gboolean
spReplicaCheckRoom(const char *replica_path, guint64 need, guint64 reserved,
                   const char *template_path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(replica_path);
    struct statvfs vfs;
    guint64 avail, keep;

    if (statvfs(dir, &vfs) < 0)
        return spErrorSetErrno(error, errno, "cannot read the free space of '%s'", dir);
    avail = (guint64) vfs.f_bavail * vfs.f_frsize;
    keep = (guint64) vfs.f_blocks * vfs.f_frsize / 100 * SP_REPLICA_KEEP_FREE_PERCENT;
    if (need + reserved + keep <= avail)
        return TRUE;
    {
        g_autofree char *need_s = spFormatSize(need);
        g_autofree char *avail_s = spFormatSize(avail);
        g_autofree char *keep_s = spFormatSize(keep);
        g_autofree char *reserved_s = spFormatSize(reserved);

        g_set_error(error, SP_ERROR, SP_ERROR_NO_SPACE,
                    "not enough space for a replica of '%s' in '%s': the copy needs %s, "
                    "%s are free (%s of it still to be written by other replica copies), "
                    "and %d%% of the tier (%s) is kept free for the instances to grow into",
                    template_path, dir, need_s, avail_s, reserved_s,
                    SP_REPLICA_KEEP_FREE_PERCENT, keep_s);
    }
    return FALSE;
}


static gboolean
checkRoomForCopy(int src, const char *template_path, const char *replica_path,
                 guint64 reserved, GError **error)
{
    struct stat sb;

    if (fstat(src, &sb) < 0)
        return spErrorSetErrno(error, errno, "cannot stat template '%s'", template_path);
    return spReplicaCheckRoom(replica_path, (guint64) sb.st_blocks * 512, reserved,
                              template_path, error);
}


static gboolean
createCopy(const char *template_path, const char *replica_path, guint64 reserved,
           SpCopyProgress progress, gpointer opaque, GError **error)
{
    g_autoptr(SpAtomicFile) file = NULL;
    int src;
    gboolean ok;

    if ((src = open(template_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return spErrorSetErrno(error, errno, "cannot open template '%s'", template_path);
    if (!(file = spAtomicFileBegin(replica_path, SP_REPLICA_MODE, error))) {
        close(src);
        return FALSE;
    }
    /* A reflink shares the extents: instant and no extra space. */
    ok = ioctl(spAtomicFileFd(file), FICLONE, src) == 0 ||
         (checkRoomForCopy(src, template_path, replica_path, reserved, error) &&
          spFileCopySparseProgress(src, spAtomicFileFd(file), progress, opaque, error));
    close(src);
    return ok && spAtomicFileCommit(file, FALSE, error);
}


gboolean
spReplicaCreate(const char *template_path, const char *replica_path,
                gboolean link, guint64 reserved, SpCopyProgress progress,
                gpointer opaque, GError **error)
{
    if (!makeReplicaDir(replica_path, error))
        return FALSE;
    return link ? createLink(template_path, replica_path, error)
                : createCopy(template_path, replica_path, reserved, progress, opaque, error);
}


void
spReplicaInfoFree(SpReplicaInfo *info)
{
    if (!info)
        return;
    g_free(info->template_name);
    g_free(info->identity);
    g_free(info->path);
    g_free(info);
}


static void
listTemplateReplicas(GPtrArray *list, const char *dir, const char *template_name)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        SpReplicaInfo *info;
        struct stat sb;
        g_autofree char *path = NULL;

        if (!spReplicaIsIdentity(name))
            continue;
        path = g_build_filename(dir, name, NULL);
        if (lstat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
            continue;
        info = g_new0(SpReplicaInfo, 1);
        info->template_name = g_strdup(template_name);
        info->identity = g_strdup(name);
        info->path = g_steal_pointer(&path);
        info->size = sb.st_size;
        info->allocation = (guint64) sb.st_blocks * 512;
        g_ptr_array_add(list, info);
    }
}


static int
compareReplicas(gconstpointer a, gconstpointer b)
{
    const SpReplicaInfo *ra = *(SpReplicaInfo * const *) a;
    const SpReplicaInfo *rb = *(SpReplicaInfo * const *) b;

    return strcmp(ra->path, rb->path);
}


GPtrArray *
spReplicaList(const char *secondary, GError **error)
{
    g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func((GDestroyNotify) spReplicaInfoFree);
    g_autofree char *root = g_build_filename(secondary, SP_REPLICA_DIR, NULL);
    g_autoptr(GDir) d = NULL;
    const char *name;
    struct stat sb;

    /* Symbolic links are never followed here: what is listed may be
     * removed by garbage collection. */
    if (lstat(root, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return g_steal_pointer(&list);
    if (!(d = spDirOpen(root, error)))
        return NULL;
    while ((name = g_dir_read_name(d))) {
        g_autofree char *dir = g_build_filename(root, name, NULL);

        if (spVolumeNameValidate(name, NULL) &&
            lstat(dir, &sb) == 0 && S_ISDIR(sb.st_mode))
            listTemplateReplicas(list, dir, name);
    }
    g_ptr_array_sort(list, compareReplicas);
    return g_steal_pointer(&list);
}


static gboolean
removeEmptyDir(const char *dir, GError **error)
{
    if (rmdir(dir) < 0 && errno != ENOTEMPTY && errno != EEXIST && errno != ENOENT)
        return spErrorSetErrno(error, errno, "cannot remove replica directory '%s'", dir);
    return TRUE;
}


gboolean
spReplicaRemove(const char *replica_path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(replica_path);
    g_autofree char *root = NULL;

    if (unlink(replica_path) < 0 && errno != ENOENT)
        return spErrorSetErrno(error, errno, "cannot remove replica '%s'", replica_path);
    /* Directories go with their last replica, so an emptied pool can be
     * deleted; non-empty ones stay. */
    if (!removeEmptyDir(dir, error))
        return FALSE;
    g_free(root);
    root = g_path_get_dirname(dir);
    return removeEmptyDir(root, error);
}
