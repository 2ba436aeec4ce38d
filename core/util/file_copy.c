/*
 * file_copy.c: copy an image file, keeping it sparse
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "util/file_copy.h"
#include "util/full_io.h"

/* Fallback for file systems where copy_file_range refuses the pair. */
static gboolean
copyRangeByReadWrite(int src_fd, int dst_fd, off_t offset, off_t len,
                     GError **error)
{
    g_autofree char *buf = g_malloc(1024 * 1024);

    while (len > 0) {
        gsize want = MIN(len, (off_t) (1024 * 1024));
        gssize got = spFullPread(src_fd, buf, want, offset, error,
                                 "cannot read source image");

        if (got < 0)
            return FALSE;
        /* The extent came from SEEK_DATA/SEEK_HOLE on this file, so it
         * ending early means someone truncated it under us. */
        if ((gsize) got < want) {
            g_set_error(error, SP_ERROR, SP_ERROR_IO,
                        "source image shrank while copying");
            return FALSE;
        }
        if (!spFullPwrite(dst_fd, buf, want, offset, error, "cannot write image copy"))
            return FALSE;
        offset += want;
        len -= want;
    }
    return TRUE;
}


/* Copy in pieces this large, so that progress is seen on long extents. */
#define COPY_CHUNK (64 * 1024 * 1024)

static gboolean
copyRange(int src_fd, int dst_fd, off_t offset, off_t len, GError **error)
{
    while (len > 0) {
        loff_t in = offset, out = offset;
        ssize_t n = copy_file_range(src_fd, &in, dst_fd, &out, len, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                      errno == EOPNOTSUPP))
            return copyRangeByReadWrite(src_fd, dst_fd, offset, len, error);
        if (n < 0)
            return spErrorSetErrno(error, errno, "cannot copy image data");
        if (n == 0) {
            g_set_error(error, SP_ERROR, SP_ERROR_IO,
                        "source image shrank while copying");
            return FALSE;
        }
        offset += n;
        len -= n;
    }
    return TRUE;
}


static gboolean
setCancelled(GError **error)
{
    g_set_error(error, SP_ERROR, SP_ERROR_CANCELLED, "image copy cancelled");
    return FALSE;
}


gboolean
spFileCopySparseProgress(int src_fd, int dst_fd,
                         SpCopyProgress progress, gpointer opaque,
                         GError **error)
{
    struct stat sb;
    off_t data = 0;

    if (fstat(src_fd, &sb) < 0)
        return spErrorSetErrno(error, errno, "cannot stat source image");

    while (data < sb.st_size) {
        off_t hole;

        data = lseek(src_fd, data, SEEK_DATA);
        if (data < 0 && errno == ENXIO)
            break;                      /* only a hole is left */
        if (data < 0)
            return spErrorSetErrno(error, errno, "cannot find data in source image");
        if ((hole = lseek(src_fd, data, SEEK_HOLE)) < 0)
            return spErrorSetErrno(error, errno, "cannot find hole in source image");
        while (data < hole) {
            off_t len = MIN(hole - data, (off_t) COPY_CHUNK);

            if (!copyRange(src_fd, dst_fd, data, len, error))
                return FALSE;
            data += len;
            if (progress && !progress(data, sb.st_size, opaque))
                return setCancelled(error);
        }
    }

    if (ftruncate(dst_fd, sb.st_size) < 0)
        return spErrorSetErrno(error, errno, "cannot set size of image copy");
    if (progress && !progress(sb.st_size, sb.st_size, opaque))
        return setCancelled(error);
    return TRUE;
}


gboolean
spFileCopySparse(int src_fd, int dst_fd, GError **error)
{
    return spFileCopySparseProgress(src_fd, dst_fd, NULL, NULL, error);
}
