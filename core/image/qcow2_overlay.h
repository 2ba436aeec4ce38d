/*
 * qcow2_overlay.h: write new, empty qcow2 images without qemu-img
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

#define SP_QCOW2_DEFAULT_CLUSTER_BITS 16
#define SP_QCOW2_MIN_CLUSTER_BITS 9
#define SP_QCOW2_MAX_CLUSTER_BITS 21

typedef struct {
    guint64 virtual_size;       /* bytes, > 0 */
    guint32 cluster_bits;       /* 9..21; 0 means the default (64 KiB) */
    gboolean extended_l2;
    const char *backing_file;   /* absolute path, or NULL for no backing file */
    const char *backing_format; /* "qcow2" or "raw"; required with backing_file */
} SpQcow2Spec;

/* The largest virtual size qemu-img accepts for @cluster_bits. */
guint64 spQcow2MaxVirtualSize(guint32 cluster_bits);

/* Check @spec without writing anything. */
gboolean spQcow2SpecValidate(const SpQcow2Spec *spec, GError **error);

/* Write a complete, empty qcow2 version 3 image (compat 1.1) described by
 * @spec into the empty file open on @fd. */
gboolean spQcow2WriteFd(int fd, const SpQcow2Spec *spec, GError **error);

G_END_DECLS
