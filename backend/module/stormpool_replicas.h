/*
 * stormpool_replicas.h: making template replicas for a running pool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "internal.h"
#include "virstorageobj.h"

#include "stormpool/template_replica.h"

/* The policy in force for @pool: 'auto' resolved to link or copy, and
 * 'link' refused when the tiers are on different file systems. */
int stormpoolReplicaPolicy(virStoragePoolObj *pool,
                           SpReplicaPolicy *policy);

/* Make sure the replica @replica_path of @template_path exists, making it
 * if needed. Concurrent callers for one replica wait for the one making
 * it, so the first vol-create waits for an eager preparation too. On
 * success the caller is counted as a user of the replica, which keeps it
 * from garbage collection until stormpoolReplicaRelease(). */
int stormpoolReplicaEnsure(const char *template_path,
                           const char *replica_path,
                           SpReplicaPolicy policy);

/* Start making @replica_path in the background (prepare='eager'). */
void stormpoolReplicaPrepare(const char *template_path,
                             const char *replica_path,
                             SpReplicaPolicy policy);

/* Whether @replica_path is being made right now. */
bool stormpoolReplicaInProgress(const char *replica_path);

void stormpoolReplicaRelease(const char *replica_path);

/* Whether @replica_path is being made or an instance is being built onto
 * it: garbage collection must leave it alone. */
bool stormpoolReplicaBusy(const char *replica_path);

/* Whether a replica inside directory @dir is being made right now. */
bool stormpoolReplicaDirBusy(const char *dir);

/* Stop the replica copies into @secondary (its pool is being stopped),
 * and let them run again (it started). */
void stormpoolReplicasStop(const char *secondary);
void stormpoolReplicasAllow(const char *secondary);
