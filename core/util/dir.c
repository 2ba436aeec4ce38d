/*
 * dir.c: directory listing with errors of the stormpool domain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>

#include "stormpool/error.h"
#include "util/dir.h"

/* GLib keeps no errno in a GFileError, only its code, which names one. */
static int
fileErrorErrno(const GError *err)
{
    static const struct { GFileError code; int errnum; } table[] = {
        { G_FILE_ERROR_EXIST, EEXIST }, { G_FILE_ERROR_ISDIR, EISDIR },
        { G_FILE_ERROR_ACCES, EACCES }, { G_FILE_ERROR_NAMETOOLONG, ENAMETOOLONG },
        { G_FILE_ERROR_NOENT, ENOENT }, { G_FILE_ERROR_NOTDIR, ENOTDIR },
        { G_FILE_ERROR_NXIO, ENXIO }, { G_FILE_ERROR_NODEV, ENODEV },
        { G_FILE_ERROR_ROFS, EROFS }, { G_FILE_ERROR_LOOP, ELOOP },
        { G_FILE_ERROR_NOMEM, ENOMEM }, { G_FILE_ERROR_MFILE, EMFILE },
        { G_FILE_ERROR_NFILE, ENFILE }, { G_FILE_ERROR_BADF, EBADF },
        { G_FILE_ERROR_INVAL, EINVAL }, { G_FILE_ERROR_INTR, EINTR },
        { G_FILE_ERROR_IO, EIO }, { G_FILE_ERROR_PERM, EPERM },
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(table); i++) {
        if (err->code == (int) table[i].code)
            return table[i].errnum;
    }
    return EIO;
}


GDir *
spDirOpen(const char *path, GError **error)
{
    g_autoptr(GError) local = NULL;
    GDir *dir = g_dir_open(path, 0, &local);

    if (!dir)
        spErrorSetErrno(error, fileErrorErrno(local), "cannot read directory '%s'", path);
    return dir;
}
