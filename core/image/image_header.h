/*
 * image_header.h: read the metadata of a qcow2 or raw disk image
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <sys/stat.h>

#include "stormpool/types.h"

G_BEGIN_DECLS

/* Read the header of the image open on @fd. The file is untrusted: every
 * length and offset is checked against the file size, so garbage yields
 * SP_ERROR_BAD_IMAGE and never a read past the end of the file. A qcow2
 * image with unknown incompatible feature bits is SP_ERROR_UNSUPPORTED. */
gboolean spImageInfoReadFd(int fd, SpImageInfo *info, GError **error);

/* The same, for a caller that has just fstat()ed @fd into @sb. */
gboolean spImageInfoReadFdStat(int fd, const struct stat *sb, SpImageInfo *info,
                               GError **error);

gboolean spImageInfoRead(const char *path, SpImageInfo *info, GError **error);

void spImageInfoClear(SpImageInfo *info);

/* A deep copy of @src into @dst (which is overwritten, not cleared). */
void spImageInfoCopy(SpImageInfo *dst, const SpImageInfo *src);

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(SpImageInfo, spImageInfoClear)

const char *spImageFormatName(const SpImageInfo *info);

G_END_DECLS
