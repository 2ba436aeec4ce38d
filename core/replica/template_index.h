/*
 * template_index.h: which instances depend on which template
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

/* The names of the images in @secondary_dir whose backing file is one of
 * @backing_paths (NULL-terminated), sorted. Dependence is read from the
 * overlays' own headers at call time, so there is no side database that
 * could drift, and overlays created behind libvirt's back count as well.
 * Backing names are compared by device and inode, so any spelling of a
 * path counts. Files that are not images, hidden files and our temporary
 * files are skipped; backing paths that do not exist have no dependents. */
GPtrArray *spBackingDependents(const char *secondary_dir,
                               const char * const *backing_paths,
                               GError **error);

/* The instances that depend on a template: directly, or through one of
 * its replicas (template_replica.h) in @secondary_dir. */
GPtrArray *spTemplateDependents(const char *secondary_dir,
                                const char *template_path,
                                GError **error);

/* "a, b, c" or "a, b, c and 4 more" for error messages. */
char *spTemplateDependentsSummary(GPtrArray *names, guint max_listed);

G_END_DECLS
