/*
 * template_replica.h: copies of templates kept in the secondary tier
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

#include "util/file_copy.h"

#include "stormpool/types.h"

G_BEGIN_DECLS

/* Replicas live in a hidden directory of the secondary tier, one
 * subdirectory per template, one file per identity of the template:
 *   SECONDARY/.stormpool-replicas/TEMPLATE-NAME/IDENTITY */
#define SP_REPLICA_DIR ".stormpool-replicas"

/* A replica is a backing image every guest of its template reads, as
 * whatever user its QEMU runs as; libvirt does not relabel it (the disk's
 * backing store carries relabel='no'), so it is readable by everyone and
 * writable only by the pool. */
#define SP_REPLICA_MODE 0644

const char *spReplicaPolicyName(SpReplicaPolicy policy);
gboolean spReplicaPolicyParse(const char *name, SpReplicaPolicy *policy);

/* The identity of a template's contents as far as its inode tells:
 * device, inode number, size and modification time, as 16 hex digits.
 * A template changed in place or replaced gets a new identity, so a new
 * replica, and the instances made before keep the replica they have. */
char *spReplicaIdentity(const char *template_path, GError **error);

/* The same without the device: what every host that mounts the template's
 * file system sees (a distributed file system gives a file the same inode
 * number on every client), so that what one host learned about a template
 * serves the others. */
char *spReplicaStoreIdentity(const char *template_path, GError **error);

char *spReplicaPath(const char *secondary, const char *template_name,
                    const char *identity);

/* If @path is a replica in @secondary, the name of its template. */
char *spReplicaTemplateName(const char *secondary, const char *path);

/* Whether @name is an identity as spReplicaIdentity makes them: 16
 * lower-case hex digits. */
gboolean spReplicaIsIdentity(const char *name);

/* If @path is ROOT/TEMPLATE/IDENTITY (the layout of replicas and of kept
 * versions), TEMPLATE; NULL for any path the pool could not have made. */
char *spIdentityPathTemplateName(const char *root, const char *path);

/* Make @replica_path from @template_path, atomically: a hard link when
 * @link, else a reflink when the file system can, else a sparse copy with
 * copy_file_range, reporting to @progress (may be NULL). A copy first
 * checks spReplicaCheckRoom, with @reserved bytes that other copies into
 * the same tier have still to write. Creates the replica directories as
 * needed. */
gboolean spReplicaCreate(const char *template_path, const char *replica_path,
                         gboolean link, guint64 reserved, SpCopyProgress progress,
                         gpointer opaque, GError **error);

/* A full SSD tier pauses every guest that writes to it, so a replica
 * must leave this much of the tier free for the instances to grow into. */
#define SP_REPLICA_KEEP_FREE_PERCENT 5

/* Whether the file system of @replica_path's directory (which must exist)
 * has room for @need more bytes besides @reserved ones promised to other
 * copies, with SP_REPLICA_KEEP_FREE_PERCENT of it left free; else
 * SP_ERROR_NO_SPACE. */
gboolean spReplicaCheckRoom(const char *replica_path, guint64 need, guint64 reserved,
                            const char *template_path, GError **error);

typedef struct {
    char *template_name;
    char *identity;
    char *path;
    guint64 size;           /* st_size */
    guint64 allocation;     /* st_blocks * 512 */
} SpReplicaInfo;

void spReplicaInfoFree(SpReplicaInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SpReplicaInfo, spReplicaInfoFree)

/* Every complete replica in @secondary (temporary files excluded). */
GPtrArray *spReplicaList(const char *secondary, GError **error);

/* Remove @replica_path and, when it was the last one, its template's
 * replica directory. */
gboolean spReplicaRemove(const char *replica_path, GError **error);

G_END_DECLS
