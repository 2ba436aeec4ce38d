/*
 * qemu_img.h: qemu-img, for what converts or moves data
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* New images are written by qcow2_overlay.c; qemu-img only converts
 * data (flattened replicas, templates made from other volumes) and
 * resizes images that hold data. Its error output becomes the message. */
gboolean spQemuImgConvert(const char *src, const char *src_format,
                          const char *dst, const char *dst_format, GError **error);

gboolean spQemuImgResize(const char *path, const char *format, guint64 capacity,
                         GError **error);

/* Whether the qcow2 image at @path is whole: every cluster its tables
 * name is inside the file, and its refcounts are right. */
gboolean spQemuImgCheck(const char *path, GError **error);

G_END_DECLS
