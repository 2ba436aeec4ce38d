/*
 * image_lock.c: is a disk image open in QEMU (or qemu-img, qemu-io, ...)?
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "fs/image_lock.h"

/* QEMU locks one byte per block-layer permission it holds (from 100) and
 * one per permission it refuses to share (from 200); see "image locking"
 * in QEMU's documentation. Probing the whole span covers every bit. */
#define QEMU_LOCK_SPAN_START 100
#define QEMU_LOCK_SPAN_LEN 200

/* Bytes of the permissions that change what a reader sees: write (bit 1)
 * and resize (bit 3); write-unchanged (bit 2) between them is harmless to
 * include. */
#define QEMU_LOCK_WRITER_START (QEMU_LOCK_SPAN_START + 1)
#define QEMU_LOCK_WRITER_LEN 3

/* A reader that shares neither write nor resize, as QEMU opens a backing
 * file: it holds consistent-read (bit 0) and refuses to share write
 * (bit 1) and resize (bit 3). */
#define QEMU_LOCK_READ (QEMU_LOCK_SPAN_START + 0)
#define QEMU_LOCK_WRITE (QEMU_LOCK_SPAN_START + 1)
#define QEMU_LOCK_RESIZE (QEMU_LOCK_SPAN_START + 3)
#define QEMU_LOCK_UNSHARE_WRITE (QEMU_LOCK_SPAN_START + 100 + 1)
#define QEMU_LOCK_UNSHARE_RESIZE (QEMU_LOCK_SPAN_START + 100 + 3)

static int
openImage(const char *path, int mode, GError **error)
{
    int fd = open(path, mode | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

    if (fd < 0) {
        spErrorSetErrno(error, errno, "cannot open '%s' to check its image locks", path);
    }
    return fd;
}


static gboolean
probeLocks(const char *path, off_t start, off_t len, gboolean *locked,
           GError **error)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = start,
        .l_len = len,
    };
    int fd;

    /* O_RDONLY is enough for F_OFD_GETLK, even when probing for F_WRLCK. */
    if ((fd = openImage(path, O_RDONLY, error)) < 0)
        return FALSE;
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0) {
        spErrorSetErrno(error, errno, "cannot check the image locks of '%s'", path);
        close(fd);
        return FALSE;
    }
    close(fd);
    *locked = fl.l_type != F_UNLCK;
    return TRUE;
}


gboolean
spImageInUse(const char *path, gboolean *in_use, GError **error)
{
    return probeLocks(path, QEMU_LOCK_SPAN_START, QEMU_LOCK_SPAN_LEN,
                      in_use, error);
}


gboolean
spImageHasWriter(const char *path, gboolean *has_writer, GError **error)
{
    return probeLocks(path, QEMU_LOCK_WRITER_START, QEMU_LOCK_WRITER_LEN,
                      has_writer, error);
}


int
spImageLockExclusive(const char *path, GError **error)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = QEMU_LOCK_SPAN_START,
        .l_len = QEMU_LOCK_SPAN_LEN,
    };
    int fd;

    /* A write lock needs a descriptor open for writing. */
    if ((fd = openImage(path, O_RDWR, error)) < 0)
        return -1;
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
        int err = errno;
        close(fd);
        if (err == EAGAIN || err == EACCES) {
            g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                        "'%s' is in use: a running guest or another QEMU "
                        "process holds its image lock", path);
        } else {
            spErrorSetErrno(error, err, "cannot lock '%s'", path);
        }
        return -1;
    }
    return fd;
}


static gboolean
lockByte(int fd, short type, off_t byte)
{
    struct flock fl = {
        .l_type = type,
        .l_whence = SEEK_SET,
        .l_start = byte,
        .l_len = 1,
    };

    return fcntl(fd, F_OFD_SETLK, &fl) == 0;
}


static void
setBeingWritten(const char *path, GError **error)
{
    g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                "'%s' is being written or changed: a running guest, another "
                "QEMU process or the pool itself holds it", path);
}


/* Whether another open file description holds @byte (F_OFD_GETLK). */
static gboolean
byteHeld(int fd, off_t byte, gboolean *held)
{
    struct flock fl = {
        .l_type = F_WRLCK,
        .l_whence = SEEK_SET,
        .l_start = byte,
        .l_len = 1,
    };

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return FALSE;
    *held = fl.l_type != F_UNLCK;
    return TRUE;
}


int
spImageLockReader(const char *path, GError **error)
{
    gboolean writer = FALSE, resizer = FALSE;
    int fd;
    int err;

    if ((fd = openImage(path, O_RDONLY, error)) < 0)
        return -1;
    /* Refuse writers first, then look for one: a writer that comes in
     * between sees the refusal, as QEMU checks after locking. Holders of
     * write-unchanged (bit 2) are welcome, as with QEMU's backing files. */
    if (!lockByte(fd, F_RDLCK, QEMU_LOCK_READ) ||
        !lockByte(fd, F_RDLCK, QEMU_LOCK_UNSHARE_WRITE) ||
        !lockByte(fd, F_RDLCK, QEMU_LOCK_UNSHARE_RESIZE) ||
        !byteHeld(fd, QEMU_LOCK_WRITE, &writer) ||
        !byteHeld(fd, QEMU_LOCK_RESIZE, &resizer)) {
        err = errno;
        close(fd);
        if (err == EAGAIN || err == EACCES)
            setBeingWritten(path, error);
        else
            spErrorSetErrno(error, err, "cannot lock '%s'", path);
        return -1;
    }
    if (writer || resizer) {
        close(fd);
        setBeingWritten(path, error);
        return -1;
    }
    return fd;
}
