/*
 * dir.h: directory listing with errors of the stormpool domain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* g_dir_open(), failing with an SP_ERROR that keeps the errno (as
 * spErrorSetErrno does) instead of a GFileError: every error the core
 * returns is of its own domain, so the module never reads another
 * domain's code as one of ours. */
GDir *spDirOpen(const char *path, GError **error);

G_END_DECLS
