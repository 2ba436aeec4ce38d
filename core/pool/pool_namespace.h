/*
 * pool_namespace.h: the stormpool XML namespace inside <pool>
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <libxml/tree.h>

#include "replica/template_replica.h"
#include "fs/tier_layout.h"

#include "stormpool/types.h"

G_BEGIN_DECLS

typedef struct {
    char *path;
    SpTierUsage usage;
} SpTierStatus;

typedef struct {
    char *template_name;
    char *path;
    guint dependents;
    guint64 size;
    guint64 allocation;
    char *format;       /* set on the replica new instances get now only */
} SpReplicaStatus;

/* Everything stormpool keeps in a pool definition: the configuration the
 * user wrote, and live status filled by refresh of a running pool and
 * shown by pool-dumpxml but never taken from user input. */
typedef struct {
    /* <stormpool:replica policy='...' prepare='eager|lazy'/> */
    gboolean have_replica;
    SpReplicaPolicy replica_policy;
    gboolean replica_eager;
    /* tier='DIR' cap='SIZE': replica files live in a RAM-backed
     * directory instead of the secondary tier, never holding more than
     * replica_cap bytes (ram_tier.h). */
    char *replica_tier;
    guint64 replica_cap;
    char *replica_cap_text;     /* as written, for round trips */
    /* <stormpool:transient tier='DIR' cap='SIZE'/>: the per-boot overlays
     * of the pool's transient disks are made in DIR (by libvirt, which
     * reads it from the pool's XML) instead of next to their volumes, and
     * a start is refused once they hold the cap. */
    char *transient_tier;
    guint64 transient_cap;
    char *transient_cap_text;

    /* status */
    gboolean have_status;
    SpTierStatus tiers[2];      /* indexed by SpTier */
    SpReplicaPolicy effective_policy;
    GPtrArray *replicas;        /* of SpReplicaStatus */
    GPtrArray *versions;        /* kept template versions, of SpReplicaStatus */
    gboolean have_ram_status;
    SpTierUsage ram_usage;      /* capacity = cap, allocation = bytes held */
} SpPoolNamespace;

/* The one reading of the <pool> element @pool: the tier directories
 * named by <source><dir> and <target><path>, validated
 * (spTierLayoutValidatePaths) and stored, stripped of surrounding white
 * space, in @primary and @secondary when they are non-NULL; and the
 * children in our namespace. Status elements are accepted and dropped, so
 * the output of pool-dumpxml can be defined again; anything else in the
 * namespace is an SP_ERROR_XML error. Never returns NULL on success; on
 * failure @primary and @secondary are left alone. */
SpPoolNamespace *spPoolNamespaceParse(xmlNodePtr pool, char **primary, char **secondary,
                                      GError **error);

void spPoolNamespaceFree(SpPoolNamespace *ns);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SpPoolNamespace, spPoolNamespaceFree)

void spPoolNamespaceSetStatus(SpPoolNamespace *ns, SpTier tier,
                              const char *path, const SpTierUsage *usage);

/* Take over @replicas (SpReplicaStatus, freed with spReplicaStatusFree)
 * and the policy in force after resolving 'auto'. */
void spPoolNamespaceSetReplicas(SpPoolNamespace *ns, SpReplicaPolicy effective,
                                GPtrArray *replicas);

void spReplicaStatusFree(SpReplicaStatus *status);

/* Take over @versions: the kept versions of templates (SpReplicaStatus:
 * template, file, dependents, size, allocation). */
void spPoolNamespaceSetVersions(SpPoolNamespace *ns, GPtrArray *versions);

/* Keep the replica status current between refreshes: @delta instances
 * more (or fewer) back onto the replica at @path of @template_name, whose
 * file now has @size and @allocation. A replica not listed yet is added;
 * nothing happens when no status is held (the pool is not running). */
void spPoolNamespaceAdjustReplica(SpPoolNamespace *ns, const char *template_name,
                                  const char *path, int delta,
                                  guint64 size, guint64 allocation);

/* Drop the replica at @path from the status (it was removed). */
void spPoolNamespaceRemoveReplica(SpPoolNamespace *ns, const char *path);

/* The replica policy the pool asks for ('auto' when it says nothing). */
SpReplicaPolicy spPoolNamespaceReplicaPolicy(const SpPoolNamespace *ns);

/* The RAM tier's status: @used bytes of the cap are held. */
void spPoolNamespaceSetRamStatus(SpPoolNamespace *ns, guint64 used);

void spPoolNamespaceClearStatus(SpPoolNamespace *ns);

/* A new overlay needs this much room under the transient tier's cap:
 * below it the tier shows no bytes available, and libvirt refuses to
 * start a transient disk. It covers what QEMU writes to create a qcow2
 * overlay (header, L1 and refcount tables, a few clusters). */
#define SP_TRANSIENT_LAYER_ROOM (1024 * 1024)

/* The transient tier's status when its overlays hold @used bytes. */
void spPoolNamespaceTransientUsage(const SpPoolNamespace *ns, guint64 used,
                                   SpTierUsage *usage);

/* The namespace's elements (configuration, then status) as lines without
 * trailing newline, indented by two spaces per level relative to the
 * <pool> children; empty when there is nothing to show. The transient
 * tier's status is read from the tier at each call, not at refresh:
 * libvirt reads it when a transient disk starts, after the guests started
 * since the last refresh have grown their overlays. */
GPtrArray *spPoolNamespaceFormat(const SpPoolNamespace *ns);

/* @text escaped for an XML attribute value or element content, tabs and
 * line breaks as character references, so that they survive a parse. */
char *spPoolNamespaceEscape(const char *text);

G_END_DECLS
