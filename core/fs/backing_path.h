/*
 * backing_path.h: backing file names, and naming dependents
 *
 * What depends on what is core/pool/pool_chains.c's; these are the path
 * rules it and the replicas share.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The absolute path an overlay's backing file name refers to: a relative
 * name is relative to the overlay's directory, as QEMU resolves it. */
char *spBackingFileResolve(const char *overlay_path, const char *backing_file);

/* Whether @path names a file directly inside directory @dir (string
 * comparison after collapsing repeated slashes; no file system access). */
gboolean spPathIsInDir(const char *path, const char *dir);

/* "a, b, c" or "a, b, c and 4 more" for error messages. */
char *spTemplateDependentsSummary(GPtrArray *names, guint max_listed);

G_END_DECLS
