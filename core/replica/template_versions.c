/*
 * template_versions.c: versions of a template kept for their dependents
 *
 * An image's header names its backing file by path, and chains the pool
 * did not make (other hosts', snapshots, qemu-img by hand) cannot be
 * rewritten. So a version keeps its inode for as long as anything needs
 * it, and the template's name moves to the new file by rename(2), the
 * one step after which the name is the new version and before which it
 * is the old one.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "util/dir.h"
#include "util/full_io.h"
#include "fs/volume_name.h"
#include "replica/template_replica.h"
#include "replica/template_versions.h"

char *
spVersionPath(const char *primary, const char *template_name, const char *identity)
{
    return g_build_filename(primary, SP_VERSION_DIR, template_name, identity, NULL);
}


char *
spVersionTemplateName(const char *primary, const char *path)
{
    g_autofree char *root = g_build_filename(primary, SP_VERSION_DIR, NULL);

    return spIdentityPathTemplateName(root, path);
}


gboolean
spVersionIsKept(const char *primary, const char *path)
{
    g_autofree char *name = spVersionTemplateName(primary, path);

    return name != NULL;
}


static gboolean
fsyncDir(const char *dir, GError **error)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return spErrorSetErrno(error, errno, "cannot open directory '%s'", dir);
    rc = fsync(fd);
    close(fd);
    return rc == 0 || spErrorSetErrno(error, errno, "cannot fsync directory '%s'", dir);
}


/* Hidden but traversable, like the replica directories: a QEMU running
 * as another user reads the versions its chains name. */
static gboolean
makeVersionDir(const char *primary, const char *template_name, char **dir, GError **error)
{
    g_autofree char *root = g_build_filename(primary, SP_VERSION_DIR, NULL);

    *dir = g_build_filename(root, template_name, NULL);
    if (g_mkdir_with_parents(*dir, 0711) < 0)
        return spErrorSetErrno(error, errno, "cannot create directory '%s'", *dir);
    return fsyncDir(*dir, error) && fsyncDir(root, error) && fsyncDir(primary, error);
}


static gboolean
sameInode(const char *a, const char *b)
{
    struct stat sa, sb;

    return stat(a, &sa) == 0 && stat(b, &sb) == 0 &&
           sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}


char *
spVersionKeep(const char *primary, const char *template_name, const char *template_path,
              GError **error)
{
    g_autofree char *identity = NULL;
    g_autofree char *dir = NULL;
    g_autofree char *path = NULL;

    if (spVersionIsKept(primary, template_path))
        return g_strdup(template_path);
    if (!(identity = spReplicaIdentity(template_path, error)) ||
        !makeVersionDir(primary, template_name, &dir, error))
        return NULL;
    path = g_build_filename(dir, identity, NULL);
    if (link(template_path, path) < 0 && errno != EEXIST) {
        spErrorSetErrno(error, errno, "cannot keep version '%s' of template '%s'",
                        path, template_path);
        return NULL;
    }
    /* The name says which inode it is: an existing one is that inode,
     * unless the template changed between the identity and the link. */
    if (!sameInode(template_path, path)) {
        g_set_error(error, SP_ERROR, SP_ERROR_CHANGED,
                    "template '%s' changed while its version was being kept; try again",
                    template_path);
        return NULL;
    }
    return fsyncDir(dir, error) ? g_steal_pointer(&path) : NULL;
}


GPtrArray *
spVersionList(const char *primary, const char *template_name, GError **error)
{
    g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *dir = g_build_filename(primary, SP_VERSION_DIR, template_name, NULL);
    g_autoptr(GDir) d = NULL;
    const char *name;
    struct stat sb;

    if (lstat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return g_steal_pointer(&list);
    if (!(d = spDirOpen(dir, error)))
        return NULL;
    while ((name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);

        if (spReplicaIsIdentity(name) && lstat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            g_ptr_array_add(list, g_steal_pointer(&path));
    }
    g_ptr_array_sort(list, (GCompareFunc) g_strcmp0);
    return g_steal_pointer(&list);
}


GPtrArray *
spVersionTemplates(const char *primary)
{
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *root = g_build_filename(primary, SP_VERSION_DIR, NULL);
    g_autoptr(GDir) d = g_dir_open(root, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        if (spVolumeNameValidate(name, NULL))
            g_ptr_array_add(names, g_strdup(name));
    }
    return names;
}


gboolean
spVersionIsUploadName(const char *name)
{
    return g_str_has_prefix(name, SP_VERSION_UPLOAD_PREFIX);
}


char *
spVersionUploadNew(const char *primary, const char *template_name, mode_t mode,
                   uid_t uid, gid_t gid, GError **error)
{
    g_autofree char *dir = NULL;
    g_autofree char *path = NULL;
    int fd;

    if (!makeVersionDir(primary, template_name, &dir, error))
        return NULL;
    path = g_build_filename(dir, SP_VERSION_UPLOAD_PREFIX "XXXXXX", NULL);
    if ((fd = g_mkstemp_full(path, O_RDWR | O_CLOEXEC, mode)) < 0) {
        spErrorSetErrno(error, errno, "cannot create an upload file in '%s'", dir);
        return NULL;
    }
    if (fchmod(fd, mode) < 0 ||
        ((uid != (uid_t) -1 || gid != (gid_t) -1) && fchown(fd, uid, gid) < 0)) {
        spErrorSetErrno(error, errno, "cannot set the mode and owner of '%s'", path);
        close(fd);
        unlink(path);
        return NULL;
    }
    close(fd);
    return g_steal_pointer(&path);
}


#define COMPARE_CHUNK (1024 * 1024)

static gboolean
compareFds(int fa, int fb, const char *a, gboolean *same, GError **error)
{
    g_autofree char *ba = g_malloc(COMPARE_CHUNK);
    g_autofree char *bb = g_malloc(COMPARE_CHUNK);
    guint64 offset = 0;
    gssize na, nb;

    *same = TRUE;
    do {
        if ((na = spFullPread(fa, ba, COMPARE_CHUNK, offset, error, "cannot read '%s'", a)) < 0 ||
            (nb = spFullPread(fb, bb, COMPARE_CHUNK, offset, error, "cannot read the copy of '%s'", a)) < 0)
            return FALSE;
        if (na != nb || memcmp(ba, bb, na) != 0)
            *same = FALSE;
        offset += na;
    } while (*same && na == COMPARE_CHUNK);
    return TRUE;
}


gboolean
spVersionSameBytes(const char *a, const char *b, gboolean *same, GError **error)
{
    struct stat sa, sb;
    int fa, fb;
    gboolean ok;

    *same = FALSE;
    if (stat(a, &sa) < 0 || stat(b, &sb) < 0)
        return spErrorSetErrno(error, errno, "cannot stat '%s' or '%s'", a, b);
    if (sa.st_size != sb.st_size)
        return TRUE;
    if ((fa = open(a, O_RDONLY | O_CLOEXEC)) < 0)
        return spErrorSetErrno(error, errno, "cannot open '%s'", a);
    if ((fb = open(b, O_RDONLY | O_CLOEXEC)) < 0) {
        close(fa);
        return spErrorSetErrno(error, errno, "cannot open '%s'", b);
    }
    ok = compareFds(fa, fb, a, same, error);
    close(fa);
    close(fb);
    return ok;
}


static gboolean
syncFile(const char *path, GError **error)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return spErrorSetErrno(error, errno, "cannot open '%s'", path);
    rc = fdatasync(fd);
    close(fd);
    return rc == 0 || spErrorSetErrno(error, errno, "cannot flush '%s'", path);
}


/* A kept version comes back through a temporary link next to the
 * template, since rename(2) is what replaces a name atomically. */
static gboolean
linkNextTo(const char *source, const char *template_path, char **tmp, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(template_path);
    g_autofree char *base = g_path_get_basename(template_path);

    *tmp = g_strdup_printf("%s/.stormpool-tmp-%s-%08x", dir, base, g_random_int());
    if (link(source, *tmp) < 0)
        return spErrorSetErrno(error, errno, "cannot link '%s' to '%s'", source, *tmp);
    return TRUE;
}


gboolean
spVersionPublish(const char *source, const char *template_path, gboolean keep_source,
                 GError **error)
{
    g_autofree char *dir = g_path_get_dirname(template_path);
    g_autofree char *tmp = NULL;
    const char *from = source;

    if (!syncFile(source, error))
        return FALSE;
    if (keep_source) {
        if (!linkNextTo(source, template_path, &tmp, error))
            return FALSE;
        from = tmp;
    }
    if (rename(from, template_path) < 0) {
        spErrorSetErrno(error, errno, "cannot rename '%s' to '%s'", from, template_path);
        if (tmp)
            unlink(tmp);
        return FALSE;
    }
    return fsyncDir(dir, error);
}


gboolean
spVersionRemove(const char *path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autofree char *root = g_path_get_dirname(dir);

    if (unlink(path) < 0 && errno != ENOENT)
        return spErrorSetErrno(error, errno, "cannot remove '%s'", path);
    /* Only when empty: the last version of a template takes its
     * directory along, so that pool-delete finds the tier empty. */
    if (rmdir(dir) == 0)
        rmdir(root);
    return TRUE;
}
