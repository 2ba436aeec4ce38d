/*
 * full_io.c: reads and writes that move every byte asked for
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "util/full_io.h"

/* Where a transfer goes: at an offset (pread/pwrite) or at the file
 * position (read/write), which pipes and sockets need. */
typedef struct {
    int fd;
    gboolean at_position;
    guint64 offset;
} Target;

static ssize_t
readOnce(const Target *t, void *buf, gsize len, gsize done)
{
    if (t->at_position)
        return read(t->fd, buf, len);
    return pread(t->fd, buf, len, t->offset + done);
}


static ssize_t
writeOnce(const Target *t, const void *buf, gsize len, gsize done)
{
    if (t->at_position)
        return write(t->fd, buf, len);
    return pwrite(t->fd, buf, len, t->offset + done);
}


/* Returns the bytes read, short only at end of file, or -1 with errno. */
static gssize
readLoop(const Target *t, guint8 *buf, gsize len)
{
    gsize done = 0;

    while (done < len) {
        ssize_t n = readOnce(t, buf + done, len - done, done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;                      /* end of file */
        done += n;
    }
    return done;
}


/* Returns FALSE with errno set when a write fails. */
static gboolean
writeLoop(const Target *t, const guint8 *buf, gsize len)
{
    gsize done = 0;

    while (done < len) {
        ssize_t n = writeOnce(t, buf + done, len - done, done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return FALSE;
        /* A non-empty write that moves nothing would spin if retried. */
        if (n == 0) {
            errno = EIO;
            return FALSE;
        }
        done += n;
    }
    return TRUE;
}


/* The caller's message, formatted only on failure. */
static void G_GNUC_PRINTF(3, 0)
setErrnoV(GError **error, int errnum, const char *fmt, va_list args)
{
    g_autofree char *what = g_strdup_vprintf(fmt, args);

    spErrorSetErrno(error, errnum, "%s", what);
}


/* The four entry points differ only in their target; each formats the
 * caller's message itself because a va_list cannot be passed on twice. */
#define SP_FULL_IO_FAIL(error, fmt) \
    do { \
        int errnum_ = errno; \
        va_list args_; \
        va_start(args_, fmt); \
        setErrnoV(error, errnum_, fmt, args_); \
        va_end(args_); \
    } while (0)

gssize
spFullPread(int fd, void *buf, gsize len, guint64 offset,
            GError **error, const char *fmt, ...)
{
    Target t = { fd, FALSE, offset };
    gssize n;

    g_return_val_if_fail(len <= G_MAXSSIZE, -1);
    if ((n = readLoop(&t, buf, len)) < 0)
        SP_FULL_IO_FAIL(error, fmt);
    return n;
}


gssize
spFullRead(int fd, void *buf, gsize len, GError **error, const char *fmt, ...)
{
    Target t = { fd, TRUE, 0 };
    gssize n;

    g_return_val_if_fail(len <= G_MAXSSIZE, -1);
    if ((n = readLoop(&t, buf, len)) < 0)
        SP_FULL_IO_FAIL(error, fmt);
    return n;
}


gboolean
spFullPwrite(int fd, const void *buf, gsize len, guint64 offset,
             GError **error, const char *fmt, ...)
{
    Target t = { fd, FALSE, offset };

    if (writeLoop(&t, buf, len))
        return TRUE;
    SP_FULL_IO_FAIL(error, fmt);
    return FALSE;
}


gboolean
spFullWrite(int fd, const void *buf, gsize len, GError **error, const char *fmt, ...)
{
    Target t = { fd, TRUE, 0 };

    if (writeLoop(&t, buf, len))
        return TRUE;
    SP_FULL_IO_FAIL(error, fmt);
    return FALSE;
}
