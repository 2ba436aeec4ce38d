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
} SpErrorCode;

G_END_DECLS
