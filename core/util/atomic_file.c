/*
 * atomic_file.c: create a file so that it exists completely or not at all
 *
 * The content goes into a temporary file in the target's directory, which
 * is flushed and then renamed to the final name, and the rename is made
 * durable by flushing the directory. A crash leaves either the complete
 * file or nothing under the final name, plus at worst a stale temporary
 * file that spAtomicFileIsTmpName lets the pool's refresh recognise.
 *
 * The writer holds an OFD write lock on its temporary file until the
 * rename is done, so that a refresh tells a file being written from a
 * stale one (spAtomicFileRemoveStale): in a primary tier shared by several
 * hosts, another host's refresh sees this host's temporary files, and the
 * lock is what the file system carries between hosts.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/atomic_file.h"
#include "stormpool/error.h"

#define ATOMIC_FILE_SUFFIX_LEN 6
#define ATOMIC_FILE_MAX_ATTEMPTS 100

static const char atomicFileSuffixChars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

struct _SpAtomicFile {
    char *path;         /* the final name, as given */
    char *dir;          /* its directory */
    char *name;         /* its last component */
    char *tmp_name;     /* the temporary file's entry in @dir_fd */
    char *tmp_path;
    int dir_fd;
    int fd;
    int lock_fd;        /* holds the temporary file's lock after fd is closed */
    gboolean tmp_exists;
};


/* The basename only tells an administrator what a stale temporary file
 * was for, so cut it rather than fail on names close to NAME_MAX. */
static char *
atomicFileTmpName(const char *name)
{
    size_t room = NAME_MAX - strlen(SP_ATOMIC_FILE_TMP_PREFIX) -
                  1 - ATOMIC_FILE_SUFFIX_LEN;
    GString *tmp = g_string_new(SP_ATOMIC_FILE_TMP_PREFIX);
    size_t i;

    g_string_append_len(tmp, name, MIN(strlen(name), room));
    g_string_append_c(tmp, '-');
    for (i = 0; i < ATOMIC_FILE_SUFFIX_LEN; i++) {
        gint32 pick = g_random_int_range(0, sizeof(atomicFileSuffixChars) - 1);

        g_string_append_c(tmp, atomicFileSuffixChars[pick]);
    }
    return g_string_free(tmp, FALSE);
}


/* An OFD write lock on byte 0 of @fd's file, without waiting. Only that
 * byte: QEMU's image locks (bytes 100 to 299) must stay free, since
 * qemu-io writes into some temporary files (hot replicas). */
static int
lockTmp(int fd)
{
    struct flock lock = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };

    return fcntl(fd, F_OFD_SETLK, &lock);
}


/* Lock the new temporary file @fd, and make sure it is still the file
 * under its name: a refresh elsewhere may have found it unlocked in the
 * instant between its creation and the lock, and removed it. A file
 * system without OFD locks has a single host: no lock is needed there. */
static gboolean
lockNewTmp(SpAtomicFile *file, int fd)
{
    struct stat mine;
    struct stat named;

    if (lockTmp(fd) < 0)
        return errno == EINVAL || errno == ENOLCK || errno == EOPNOTSUPP;
    return fstat(fd, &mine) == 0 &&
           fstatat(file->dir_fd, file->tmp_name, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
           mine.st_dev == named.st_dev && mine.st_ino == named.st_ino;
}


static gboolean
atomicFileCreateTmp(SpAtomicFile *file, mode_t mode, GError **error)
{
    int attempt;

    for (attempt = 0; attempt < ATOMIC_FILE_MAX_ATTEMPTS; attempt++) {
        g_free(file->tmp_name);
        file->tmp_name = atomicFileTmpName(file->name);
        file->fd = openat(file->dir_fd, file->tmp_name,
                          O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                          mode);
        if (file->fd >= 0 && lockNewTmp(file, file->fd))
            break;
        if (file->fd >= 0) {
            close(file->fd);        /* taken away: another name */
            file->fd = -1;
            continue;
        }
        if (errno != EEXIST)
            return spErrorSetErrno(error, errno,
                                   "cannot create a temporary file for '%s'", file->path);
    }
    if (file->fd < 0)
        return spErrorSetErrno(error, EEXIST,
                               "cannot create a temporary file for '%s'", file->path);

    file->tmp_exists = TRUE;
    file->tmp_path = g_build_filename(file->dir, file->tmp_name, NULL);

    /* open() applied the umask; callers ask for a mode on purpose. */
    if (fchmod(file->fd, mode) < 0)
        return spErrorSetErrno(error, errno, "cannot set the mode of '%s'", file->tmp_path);
    return TRUE;
}


SpAtomicFile *
spAtomicFileBegin(const char *path, mode_t mode, GError **error)
{
    g_autoptr(SpAtomicFile) file = g_new0(SpAtomicFile, 1);

    file->dir_fd = -1;
    file->fd = -1;
    file->lock_fd = -1;
    file->path = g_strdup(path);

    file->dir = g_path_get_dirname(path);
    file->name = g_path_get_basename(path);

    /* g_path_get_basename() turns "" into "." and "/" into "/". */
    if (g_str_has_suffix(path, "/") ||
        strcmp(file->name, ".") == 0 || strcmp(file->name, "..") == 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "'%s' does not name a file", path);
        return NULL;
    }

    /* Working relative to one directory descriptor keeps the rename and
     * the fsync on the same directory even if its path changes. */
    file->dir_fd = open(file->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (file->dir_fd < 0) {
        spErrorSetErrno(error, errno, "cannot open directory '%s' to create '%s'",
                        file->dir, path);
        return NULL;
    }

    if (!atomicFileCreateTmp(file, mode, error))
        return NULL;
    return g_steal_pointer(&file);
}


int
spAtomicFileFd(SpAtomicFile *file)
{
    return file->fd;
}


const char *
spAtomicFileTmpPath(SpAtomicFile *file)
{
    return file->tmp_path;
}


static void
atomicFileRemoveTmp(SpAtomicFile *file)
{
    if (!file->tmp_exists)
        return;
    if (unlinkat(file->dir_fd, file->tmp_name, 0) == 0 || errno == ENOENT)
        file->tmp_exists = FALSE;
}


static int
atomicFileRename(SpAtomicFile *file)
{
    if (renameat(file->dir_fd, file->tmp_name, file->dir_fd, file->name) < 0)
        return -1;
    file->tmp_exists = FALSE;
    return 0;
}


/* rename() would silently replace an existing target. */
static int
atomicFileRenameNoReplace(SpAtomicFile *file)
{
    if (renameat2(file->dir_fd, file->tmp_name, file->dir_fd, file->name,
                  RENAME_NOREPLACE) == 0) {
        file->tmp_exists = FALSE;
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS)
        return -1;

    /* The file system cannot do it in one step; link() also refuses to
     * replace, and a crash before the unlink only leaves a stale
     * temporary file next to the complete target. */
    if (linkat(file->dir_fd, file->tmp_name, file->dir_fd, file->name, 0) < 0)
        return -1;
    /* The target is complete and in place, so a temporary name that
     * refuses to go away is no reason to fail: spAtomicFileFree tries
     * again and the pool's refresh removes it at the latest. */
    atomicFileRemoveTmp(file);
    return 0;
}


static gboolean
atomicFileMove(SpAtomicFile *file, gboolean replace, GError **error)
{
    int rc = replace ? atomicFileRename(file)
                     : atomicFileRenameNoReplace(file);

    if (rc < 0) {
        int err = errno;

        if (err == EEXIST) {
            g_set_error(error, SP_ERROR, SP_ERROR_EXISTS,
                        "'%s' already exists", file->path);
            return FALSE;
        }
        return spErrorSetErrno(error, err, "cannot rename to '%s'", file->path);
    }
    return TRUE;
}


static gboolean
atomicFileCommitSteps(SpAtomicFile *file, gboolean replace, GError **error)
{
    int fd = file->fd;

    /* The data must be on disk before the name points to it, or a crash
     * could leave a complete-looking name over missing data. */
    if (fdatasync(fd) < 0)
        return spErrorSetErrno(error, errno, "cannot flush '%s'", file->tmp_path);
    /* The lock belongs to the open file, which a duplicate keeps open
     * until the rename is done (close() still flushes: it runs for each
     * descriptor). */
    file->lock_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    file->fd = -1;
    /* Network file systems may report a failed write-back only here. */
    if (close(fd) < 0)
        return spErrorSetErrno(error, errno, "cannot close '%s'", file->tmp_path);

    if (!atomicFileMove(file, replace, error))
        return FALSE;

    /* The new directory entry is only durable once the directory is. */
    if (fsync(file->dir_fd) < 0)
        return spErrorSetErrno(error, errno, "cannot flush directory '%s'", file->dir);
    return TRUE;
}


gboolean
spAtomicFileCommit(SpAtomicFile *file, gboolean replace, GError **error)
{
    g_return_val_if_fail(file->fd >= 0 && file->tmp_exists, FALSE);

    if (!atomicFileCommitSteps(file, replace, error)) {
        atomicFileRemoveTmp(file);
        return FALSE;
    }
    return TRUE;
}


void
spAtomicFileFree(SpAtomicFile *file)
{
    if (!file)
        return;
    if (file->fd >= 0)
        close(file->fd);
    if (file->dir_fd >= 0) {
        atomicFileRemoveTmp(file);
        close(file->dir_fd);
    }
    if (file->lock_fd >= 0)
        close(file->lock_fd);
    g_free(file->path);
    g_free(file->dir);
    g_free(file->name);
    g_free(file->tmp_name);
    g_free(file->tmp_path);
    g_free(file);
}


gboolean
spAtomicFileIsTmpName(const char *name)
{
    size_t prefix_len = strlen(SP_ATOMIC_FILE_TMP_PREFIX);
    size_t len;
    size_t i;

    if (!name || !g_str_has_prefix(name, SP_ATOMIC_FILE_TMP_PREFIX))
        return FALSE;

    /* Require the "-XXXXXX" tail too, so that a file an administrator
     * happened to name with our prefix is not deleted as ours. */
    len = strlen(name);
    if (len < prefix_len + 1 + ATOMIC_FILE_SUFFIX_LEN ||
        name[len - ATOMIC_FILE_SUFFIX_LEN - 1] != '-')
        return FALSE;
    for (i = len - ATOMIC_FILE_SUFFIX_LEN; i < len; i++) {
        if (!g_ascii_isalnum(name[i]))
            return FALSE;
    }
    return TRUE;
}


int
spAtomicFileRemoveStale(int dir_fd, const char *name)
{
    int fd = openat(dir_fd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    int rc;
    int err;

    if (fd < 0)
        return -1;
    if (lockTmp(fd) < 0 && (errno == EAGAIN || errno == EACCES)) {
        close(fd);
        errno = EBUSY;
        return -1;
    }
    /* Locked (or unlockable, where no other host can write): removed
     * while the lock keeps a writer from taking it up again. */
    rc = unlinkat(dir_fd, name, 0);
    err = errno;
    close(fd);
    errno = err;
    return rc;
}
