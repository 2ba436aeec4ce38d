/*
 * ram_tier.h: replicas in a RAM-backed directory, under a size cap
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A RAM tier is a directory on tmpfs (e.g. /dev/shm/lab) holding replicas,
 * full or hot, with a cap in bytes set by the admin. Its pages are the
 * guests' memory, so the cap is never exceeded: room for a new replica is
 * made by evicting replicas no instance uses, least recently used first,
 * or the replica is refused with SP_ERROR_NO_SPACE. After a host reboot
 * the tier is empty; the replicas instances name are made again from the
 * stored hot sets (spHotReplicaEnsure). */

typedef struct {
    char *path;             /* a replica file in the tier */
    guint64 allocation;     /* bytes it holds in RAM (st_blocks * 512) */
    guint dependents;       /* instances backing onto it: never evicted if > 0 */
    gint64 last_used;       /* when an instance was last made on it (any clock) */
} SpRamReplica;

SpRamReplica *spRamReplicaNew(const char *path, guint64 allocation, guint dependents,
                              gint64 last_used);
void spRamReplicaFree(SpRamReplica *replica);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SpRamReplica, spRamReplicaFree)

/* Parse a cap such as "2G", "512M", "1073741824" (binary units K M G T,
 * optional "iB"/"B"); 0 and garbage are SP_ERROR_INVALID_ARG. */
gboolean spRamTierParseCap(const char *text, guint64 *cap, GError **error);

/* Bytes held by the regular files under @dir, recursively, symbolic links
 * not followed (what the tier costs in RAM, temporary files included). */
gboolean spRamTierUsage(const char *dir, guint64 *used, GError **error);

/* Which of @replicas (SpRamReplica, the tier's current ones) to evict so
 * that @need more bytes fit under @cap, @used being the tier's usage now:
 * unused replicas, least recently used first, no more than needed. Returns
 * the chosen ones (borrowed from @replicas; empty if nothing must go), or
 * NULL with SP_ERROR_NO_SPACE saying the cap, the usage, what is needed
 * and what eviction could free. */
GPtrArray *spRamTierPlanRoom(const char *dir, guint64 cap, guint64 used, guint64 need,
                             GPtrArray *replicas, GError **error);

/* spRamTierUsage + spRamTierPlanRoom + removal of the chosen replicas
 * (spReplicaRemove). On return TRUE, @need bytes fit under the cap; the
 * paths removed are appended to @evicted (may be NULL) for the log. */
gboolean spRamTierMakeRoom(const char *dir, guint64 cap, guint64 need,
                           GPtrArray *replicas, GPtrArray *evicted, GError **error);

G_END_DECLS
