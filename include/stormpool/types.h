/*
 * types.h: the values the core and the libvirt module both speak of
 *
 * The module sees the core through pool.h and error.h alone; these are
 * the types those headers need, defined once here for both.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define SP_POOL_NAMESPACE_PREFIX "stormpool"
#define SP_POOL_NAMESPACE_URI "urn:stormpool:pool:1.0"

typedef enum {
    SP_TIER_PRIMARY,    /* templates: big, slow disks */
    SP_TIER_SECONDARY,  /* instance overlays: SSD */
} SpTier;

/* What a file of the tiers is to the pool (core/pool/pool_chains.c). */
typedef enum {
    SP_ROLE_TEMPLATE,   /* in the primary tier */
    SP_ROLE_INSTANCE,   /* backs onto a template or one of its replicas */
    SP_ROLE_LAYER,      /* any other image of the secondary tier: an external
                         * snapshot, a blockcopy destination, a layer of a
                         * layer, an image of its own */
} SpVolumeRole;

typedef struct {
    guint64 capacity;
    guint64 allocation;
    guint64 available;
} SpTierUsage;

typedef enum {
    SP_REPLICA_AUTO,    /* link on one file system, copy across two */
    SP_REPLICA_NONE,    /* instances back directly onto the template */
    SP_REPLICA_COPY,    /* a sparse copy (or reflink) in the secondary tier */
    SP_REPLICA_LINK,    /* a hard link in the secondary tier */
    SP_REPLICA_HOT,     /* a qcow2 overlay holding the template's hot set */
} SpReplicaPolicy;

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

G_END_DECLS
