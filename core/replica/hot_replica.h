/*
 * hot_replica.h: replicas that hold only a template's hot set
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

#include "image/hot_set.h"

G_BEGIN_DECLS

/* A hot replica is a qcow2 overlay of the template (backing file named by
 * absolute path, backing format recorded) whose clusters hold a copy of
 * the template's hot set: a boot's reads are served from the fast tier,
 * and a read outside the hot set falls through to the template, so an
 * instance backed onto it always reads the template's contents. Its
 * cluster size is SP_HOT_REPLICA_CLUSTER; the hot set is widened to it. */
#define SP_HOT_REPLICA_CLUSTER (64 * 1024)

/* Reads of the copy are at most this long (QEMU's read buffer). */
#define SP_HOT_REPLICA_CHUNK (4 * 1024 * 1024)

/* Bytes a hot replica of @set takes: its data clusters plus its qcow2
 * tables (header, L1, L2, refcounts), rounded up. What to check for room
 * (spReplicaCheckRoom, spRamTierPlanRoom) before spHotReplicaCreate. */
guint64 spHotReplicaSize(const SpHotSet *set);

/* Make @replica_path, a hot replica of @template_path (format @template_format,
 * "qcow2" or "raw") holding @set, atomically: an empty overlay is written
 * under a temporary name by the core's qcow2 writer, filled by QEMU's own
 * copy-on-read (@qemu_io -C, reading the set through the overlay; NULL
 * means "qemu-io" from PATH), checked (every cluster of the set must be
 * allocated in it, read back from its L2 tables), fdatasync'ed and renamed
 * into place, never over an existing file (SP_ERROR_EXISTS). Creates the
 * replica's directory (mode 0711) as needed. The set must have been
 * learned for a disk of the template's virtual size (else
 * SP_ERROR_INVALID_ARG). A crash or kill leaves only a temporary file,
 * which the next refresh removes. */
gboolean spHotReplicaCreate(const char *template_path, const char *template_format,
                            const SpHotSet *set, const char *replica_path,
                            const char *qemu_io, GError **error);

/* After a host reboot a replica in a RAM tier is gone while instances
 * still name it as their backing file: make it again, at the same path,
 * from the stored hot set, if it is missing. TRUE if it exists or was
 * made; *@made (may be NULL) says which. */
gboolean spHotReplicaEnsure(const char *template_path, const char *template_format,
                            const SpHotSet *set, const char *replica_path,
                            const char *qemu_io, gboolean *made, GError **error);

G_END_DECLS
