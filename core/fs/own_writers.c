/*
 * own_writers.c: does this process have a file open for writing?
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stormpool/error.h"
#include "fs/own_writers.h"

#define FD_DIR "/proc/self/fd"
#define FDINFO_DIR "/proc/self/fdinfo"


/* The open flags of descriptor @fd_name, from its fdinfo ("flags:" is
 * in octal). */
static gboolean
descriptorFlags(const char *fd_name, int *flags)
{
    g_autofree char *path = g_build_filename(FDINFO_DIR, fd_name, NULL);
    g_autofree char *text = NULL;
    const char *line;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return FALSE;
    if (!(line = strstr(text, "flags:")))
        return FALSE;
    *flags = (int) strtol(line + strlen("flags:"), NULL, 8);
    return TRUE;
}


static gboolean
descriptorWrites(const char *fd_name, const struct stat *file)
{
    g_autofree char *path = NULL;
    struct stat sb;
    int flags;

    /* The flags first: only descriptors open for writing are followed to
     * their file, so sockets and files on a hung mount are never stat()ed
     * for nothing. A descriptor closed meanwhile just fails. */
    if (!descriptorFlags(fd_name, &flags) || (flags & O_ACCMODE) == O_RDONLY)
        return FALSE;
    path = g_build_filename(FD_DIR, fd_name, NULL);
    return stat(path, &sb) == 0 && sb.st_dev == file->st_dev && sb.st_ino == file->st_ino;
}


gboolean
spProcessWritesFile(const char *path, gboolean *writing, GError **error)
{
    g_autoptr(GDir) dir = NULL;
    g_autoptr(GError) err = NULL;
    struct stat file;
    const char *name;

    if (stat(path, &file) < 0) {
        return spErrorSetErrno(error, errno, "cannot stat '%s'", path);
    }
    if (!(dir = g_dir_open(FD_DIR, 0, &err))) {
        g_set_error(error, SP_ERROR, SP_ERROR_IO,
                    "cannot list this process's open files: %s", err->message);
        return FALSE;
    }
    *writing = FALSE;
    while (!*writing && (name = g_dir_read_name(dir)))
        *writing = descriptorWrites(name, &file);
    return TRUE;
}
