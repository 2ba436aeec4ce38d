/*
 * image_header.h: read the metadata of a qcow2 or raw disk image
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <sys/stat.h>

G_BEGIN_DECLS

typedef enum {
    SP_IMAGE_FORMAT_RAW,
    SP_IMAGE_FORMAT_QCOW2,
    SP_IMAGE_FORMAT_OTHER,      /* a known non-qcow2 format, see other_format */
} SpImageFormat;

typedef struct {
    SpImageFormat format;
    const char *other_format;   /* static name ("vmdk", "qed", ...) for OTHER */

    guint64 virtual_size;       /* bytes the guest sees */
    guint64 file_size;          /* st_size */
    guint64 allocation;         /* bytes allocated on the host (st_blocks) */

    /* qcow2 only */
    guint32 qcow2_version;      /* 2 or 3 */
    guint32 cluster_bits;
    guint64 cluster_size;
    char *backing_file;         /* NULL when the image has no backing file */
    char *backing_format;       /* from the header extension, NULL if absent */
    char *data_file;            /* external data file name, NULL if absent */
    gboolean dirty;             /* incompatible feature bit 0 */
    gboolean corrupt;           /* incompatible feature bit 1 */
    gboolean external_data_file;/* incompatible feature bit 2 */
    gboolean extended_l2;       /* incompatible feature bit 4 */
    gboolean lazy_refcounts;    /* compatible feature bit 0 */
    guint8 compression_type;    /* 0 zlib, 1 zstd */
} SpImageInfo;

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
