/*
 * error.c: error domain of the stormpool core library
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>

#include "stormpool/error.h"

/* The domain's errors carry the errno of a failed system call, so that
 * the libvirt adapter can report it as libvirt reports its own. */
typedef struct {
    int errnum;
    char *what;
} SpErrorPrivate;

GQuark spError_quark(void);

static void
spError_private_init(SpErrorPrivate *priv)
{
    priv->errnum = 0;
    priv->what = NULL;
}


static void
spError_private_copy(const SpErrorPrivate *src, SpErrorPrivate *dst)
{
    dst->errnum = src->errnum;
    dst->what = g_strdup(src->what);
}


static void
spError_private_clear(SpErrorPrivate *priv)
{
    g_clear_pointer(&priv->what, g_free);
}

G_DEFINE_EXTENDED_ERROR(SpError, spError)


GQuark
spErrorQuark(void)
{
    return spError_quark();
}


static SpErrorCode
errnoCode(int errnum)
{
    switch (errnum) {
    case ENOENT:
        return SP_ERROR_NOT_FOUND;
    case ENOSPC:
    case EDQUOT:
        return SP_ERROR_NO_SPACE;
    default:
        return SP_ERROR_IO;
    }
}


gboolean
spErrorSetErrno(GError **error, int errnum, const char *format, ...)
{
    g_autofree char *what = NULL;
    SpErrorPrivate *priv;
    va_list args;
    GError *err;

    if (!error)
        return FALSE;
    va_start(args, format);
    what = g_strdup_vprintf(format, args);
    va_end(args);
    err = g_error_new(SP_ERROR, errnoCode(errnum), "%s: %s", what, g_strerror(errnum));
    priv = spError_get_private(err);
    priv->errnum = errnum;
    priv->what = g_steal_pointer(&what);
    g_propagate_error(error, err);
    return FALSE;
}


SpErrorCode
spErrorCode(const GError *error)
{
    if (!error || error->domain != SP_ERROR)
        return SP_ERROR_IO;
    return error->code;
}


int
spErrorErrno(const GError *error)
{
    if (!error || error->domain != SP_ERROR)
        return 0;
    return spError_get_private(error)->errnum;
}


const char *
spErrorWhat(const GError *error)
{
    const SpErrorPrivate *priv;

    if (!error || error->domain != SP_ERROR)
        return error ? error->message : NULL;
    priv = spError_get_private(error);
    return priv->what ? priv->what : error->message;
}
