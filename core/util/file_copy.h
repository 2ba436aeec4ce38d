/*
 * file_copy.h: copy an image file, keeping it sparse
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Copy all of @src_fd into the empty file @dst_fd: only the data extents
 * (SEEK_DATA/SEEK_HOLE) are copied, with copy_file_range so that the
 * kernel can share or offload the copy, and holes stay holes. */
gboolean spFileCopySparse(int src_fd, int dst_fd, GError **error);

/* Called as the copy advances: @done bytes of the @total of the source
 * file are behind (holes count as done). Returning FALSE stops the copy,
 * which then fails with SP_ERROR_CANCELLED. */
typedef gboolean (*SpCopyProgress)(guint64 done, guint64 total, gpointer opaque);

/* spFileCopySparse, reporting progress at least every 64 MiB of data. */
gboolean spFileCopySparseProgress(int src_fd, int dst_fd,
                                  SpCopyProgress progress, gpointer opaque,
                                  GError **error);

G_END_DECLS
