/*
 * transient_layer.h: the per-boot overlays of transient disks
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* libvirt names the overlay of a transient disk VOLUME.TRANSIENT-DOMAIN,
 * in the pool's transient tier or next to the volume. */
#define SP_TRANSIENT_LAYER_MARK ".TRANSIENT-"

/* A layer younger than this may be one libvirt has just created and QEMU
 * has not opened yet: it is never taken for stale. */
#define SP_TRANSIENT_LAYER_GRACE_SECONDS 30

/* Whether @name is the file name of such an overlay. */
gboolean spTransientLayerName(const char *name);

/* Remove from @dir every overlay of a transient disk that no QEMU holds
 * (QEMU's image locks tell) and that was last changed more than
 * SP_TRANSIENT_LAYER_GRACE_SECONDS before @now (seconds since the epoch).
 * Such an overlay was left behind by a crash (of the host, or of QEMU
 * while its daemon was down): its guest is gone and its data was
 * throw-away, and it would keep the next start of that guest from making
 * a new one on libvirt 9.0. Each removal is logged; returns how many were
 * removed. A directory that cannot be read removes nothing. */
guint spTransientLayersRemoveStale(const char *dir, gint64 now);

G_END_DECLS
