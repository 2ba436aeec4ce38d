/*
 * error.h: error domain of the stormpool core library
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define SP_ERROR (spErrorQuark())

GQuark spErrorQuark(void);

/* The libvirt adapter maps each code onto a virErrorNumber, so a code says
 * which kind of failure the user sees, not where it happened. */
typedef enum {
    SP_ERROR_INVALID_ARG,   /* a name, size or setting the user got wrong */
    SP_ERROR_NOT_FOUND,     /* a file or volume that does not exist */
    SP_ERROR_EXISTS,        /* a file or volume that already exists */
    SP_ERROR_IO,            /* a system call failed */
    SP_ERROR_BAD_IMAGE,     /* a file that is not a usable disk image */
    SP_ERROR_UNSUPPORTED,   /* a valid image using a feature we refuse */
    SP_ERROR_IN_USE,        /* an operation refused to protect data in use */
    SP_ERROR_XML,           /* malformed stormpool namespace XML */
    SP_ERROR_NO_SPACE,      /* a tier without room for what was asked */
    SP_ERROR_CANCELLED,     /* stopped on request (a pool being stopped) */
    SP_ERROR_TIER_MISSING,  /* a tier directory of the pool does not exist */
    SP_ERROR_CHANGED,       /* a file changed under the operation: retry */
    SP_ERROR_INVALID_STATE, /* the operation does not fit the volume's state */
    SP_ERROR_ARGUMENT_UNSUPPORTED, /* a valid option the pool does not take */
    SP_ERROR_OPERATION_UNSUPPORTED, /* a change the pool never makes */
} SpErrorCode;

/* Set @error from a failed system call: "MESSAGE: strerror(@errnum)",
 * SP_ERROR_NOT_FOUND for ENOENT, SP_ERROR_NO_SPACE for ENOSPC and EDQUOT,
 * SP_ERROR_IO otherwise. The error keeps @errnum and MESSAGE, so that the
 * libvirt adapter can report it as a system error. Returns FALSE. */
gboolean spErrorSetErrno(GError **error, int errnum, const char *format, ...)
    G_GNUC_PRINTF(3, 4);

/* The errno an error of spErrorSetErrno carries, else 0. */
int spErrorErrno(const GError *error);

/* The code of any error the core returns: its own in the SP_ERROR domain;
 * an error of another domain (a bug: the core converts them) is
 * SP_ERROR_IO, never read as one of ours. */
SpErrorCode spErrorCode(const GError *error);

/* What failed, without the strerror() text: the message given to
 * spErrorSetErrno, or the whole message of any other error. */
const char *spErrorWhat(const GError *error);

G_END_DECLS
