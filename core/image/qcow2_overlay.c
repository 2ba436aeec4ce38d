/*
 * qcow2_overlay.c: write new, empty qcow2 images without qemu-img
 *
 * The image is what `qemu-img create -f qcow2` makes: a version 3 header
 * (compat 1.1) in cluster 0 followed by the header extensions and the
 * backing file name, then the refcount table, the refcount blocks and the
 * L1 table, each starting on a cluster boundary. Nothing is allocated for
 * guest data, so the L1 table is all zeros and left as a hole.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "util/full_io.h"
#include "image/qcow2_overlay.h"

#define QCOW2_MAGIC 0x514649fbU             /* "QFI\xfb" */
#define QCOW2_VERSION 3

#define QCOW2_EXT_END 0x00000000U
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU
#define QCOW2_EXT_FEATURE_NAMES 0x6803f857U

#define QCOW2_INCOMPAT_EXTENDED_L2 (1ULL << 4)

/* 16-bit refcounts, the only width qemu-img creates by default. */
#define QCOW2_REFCOUNT_ORDER 4
#define QCOW2_REFCOUNT_BYTES 2

#define QCOW2_BACKING_FILE_MAX 1023

/* qemu refuses to open an image whose L1 table exceeds 32 MiB, which is
 * what bounds the virtual size qemu-img accepts. */
#define QCOW2_MAX_L1_ENTRIES ((32 * 1024 * 1024) / 8)

/* qemu-img rounds every virtual size up to whole sectors. */
#define QCOW2_SECTOR_SIZE 512

/* qemu-img leaves the feature name table out of small header clusters,
 * where it would take the room a backing file name needs; doing the same
 * keeps our images byte-for-byte equal to qemu-img's. */
#define QCOW2_FEATURE_TABLE_MIN_CLUSTER_BITS 13

/* The version 3 header up to and including compression_type, padded to
 * the multiple of 8 that header_length must be. Every field is naturally
 * aligned, so the compiler adds no padding of its own. */
typedef struct {
    guint32 magic;
    guint32 version;
    guint64 backing_file_offset;
    guint32 backing_file_size;
    guint32 cluster_bits;
    guint64 size;
    guint32 crypt_method;
    guint32 l1_size;
    guint64 l1_table_offset;
    guint64 refcount_table_offset;
    guint32 refcount_table_clusters;
    guint32 nb_snapshots;
    guint64 snapshots_offset;
    guint64 incompatible_features;
    guint64 compatible_features;
    guint64 autoclear_features;
    guint32 refcount_order;
    guint32 header_length;
    guint8 compression_type;
    guint8 padding[7];
} Qcow2Header;

G_STATIC_ASSERT(sizeof(Qcow2Header) == 112);
G_STATIC_ASSERT(G_STRUCT_OFFSET(Qcow2Header, compression_type) == 104);

typedef enum {
    QCOW2_FEATURE_INCOMPATIBLE = 0,
    QCOW2_FEATURE_COMPATIBLE = 1,
    QCOW2_FEATURE_AUTOCLEAR = 2,
} Qcow2FeatureType;

typedef struct {
    guint8 type;
    guint8 bit;
    char name[46];
} Qcow2FeatureName;

G_STATIC_ASSERT(sizeof(Qcow2FeatureName) == 48);

/* Lets a tool that predates a feature name it in its error message. */
static const Qcow2FeatureName qcow2FeatureNames[] = {
    { QCOW2_FEATURE_INCOMPATIBLE, 0, "dirty bit" },
    { QCOW2_FEATURE_INCOMPATIBLE, 1, "corrupt bit" },
    { QCOW2_FEATURE_INCOMPATIBLE, 2, "external data file" },
    { QCOW2_FEATURE_INCOMPATIBLE, 3, "compression type" },
    { QCOW2_FEATURE_INCOMPATIBLE, 4, "extended L2 entries" },
    { QCOW2_FEATURE_COMPATIBLE, 0, "lazy refcounts" },
    { QCOW2_FEATURE_AUTOCLEAR, 0, "bitmaps" },
    { QCOW2_FEATURE_AUTOCLEAR, 1, "raw external data" },
};

/* Where the metadata goes; offsets in bytes. */
typedef struct {
    guint32 cluster_bits;
    guint64 cluster_size;
    guint64 virtual_size;           /* rounded up to whole sectors */
    guint32 l1_size;                /* entries */
    guint64 refcount_table_offset;
    guint64 refcount_table_clusters;
    guint64 refcount_block_offset;  /* the blocks are contiguous */
    guint64 refcount_blocks;
    guint64 l1_table_offset;
    guint64 used_clusters;          /* every cluster up to the end of file */
    guint64 file_size;
} Qcow2Layout;


static guint64
qcow2DivRoundUp(guint64 value, guint64 divisor)
{
    return value / divisor + (value % divisor != 0);
}


static guint32
qcow2ClusterBits(const SpQcow2Spec *spec)
{
    return spec->cluster_bits ? spec->cluster_bits
                              : SP_QCOW2_DEFAULT_CLUSTER_BITS;
}


static guint64
qcow2L2Entries(guint32 cluster_bits, gboolean extended_l2)
{
    /* An extended L2 entry carries a subcluster bitmap next to the
     * cluster descriptor, so it takes 16 bytes instead of 8. */
    return (1ULL << cluster_bits) / (extended_l2 ? 16 : 8);
}


static guint64
qcow2MaxSize(guint32 cluster_bits, gboolean extended_l2)
{
    if (cluster_bits < SP_QCOW2_MIN_CLUSTER_BITS ||
        cluster_bits > SP_QCOW2_MAX_CLUSTER_BITS)
        return 0;
    return QCOW2_MAX_L1_ENTRIES * qcow2L2Entries(cluster_bits, extended_l2) *
           (1ULL << cluster_bits);
}


guint64
spQcow2MaxVirtualSize(guint32 cluster_bits)
{
    if (cluster_bits == 0)
        cluster_bits = SP_QCOW2_DEFAULT_CLUSTER_BITS;
    return qcow2MaxSize(cluster_bits, FALSE);
}


/* The refcount blocks must cover every cluster of the image, themselves
 * and the refcount table included, so adding a block can call for another
 * block or another table cluster. The counts only grow and the metadata
 * is bounded, so this settles after a few rounds. */
static void
qcow2SizeRefcounts(guint64 cluster_size, guint64 other_clusters,
                   guint64 *table_clusters, guint64 *blocks)
{
    guint64 block_entries = cluster_size / QCOW2_REFCOUNT_BYTES;
    guint64 table_entries = cluster_size / sizeof(guint64);
    guint64 need_table_clusters = 1;
    guint64 need_blocks = 1;

    do {
        guint64 used;

        *table_clusters = need_table_clusters;
        *blocks = need_blocks;
        used = other_clusters + *table_clusters + *blocks;
        need_blocks = qcow2DivRoundUp(used, block_entries);
        need_table_clusters = qcow2DivRoundUp(need_blocks, table_entries);
    } while (need_blocks != *blocks || need_table_clusters != *table_clusters);
}


static void
qcow2ComputeLayout(const SpQcow2Spec *spec, Qcow2Layout *layout)
{
    guint32 cluster_bits = qcow2ClusterBits(spec);
    guint64 cluster_size = 1ULL << cluster_bits;
    guint64 l2_coverage = qcow2L2Entries(cluster_bits, spec->extended_l2) *
                          cluster_size;
    guint64 size = qcow2DivRoundUp(spec->virtual_size, QCOW2_SECTOR_SIZE) *
                   QCOW2_SECTOR_SIZE;
    guint64 l1_size = qcow2DivRoundUp(size, l2_coverage);
    guint64 l1_clusters = qcow2DivRoundUp(l1_size * sizeof(guint64),
                                          cluster_size);
    guint64 table_clusters;
    guint64 blocks;

    /* Cluster 0 holds the header, the L1 table comes last. */
    qcow2SizeRefcounts(cluster_size, 1 + l1_clusters, &table_clusters, &blocks);

    layout->cluster_bits = cluster_bits;
    layout->cluster_size = cluster_size;
    layout->virtual_size = size;
    layout->l1_size = l1_size;
    layout->refcount_table_offset = cluster_size;
    layout->refcount_table_clusters = table_clusters;
    layout->refcount_block_offset = (1 + table_clusters) * cluster_size;
    layout->refcount_blocks = blocks;
    layout->l1_table_offset = (1 + table_clusters + blocks) * cluster_size;
    layout->used_clusters = 1 + table_clusters + blocks + l1_clusters;
    /* Like qemu-img, end the file with the last L1 entry rather than the
     * end of its cluster: refcounts count the partial cluster anyway. */
    layout->file_size = layout->l1_table_offset + l1_size * sizeof(guint64);
}


static void
qcow2AppendExtension(GByteArray *buf, guint32 type,
                     const void *data, guint32 len)
{
    static const guint8 zeros[8] = { 0 };
    guint32 be_type = GUINT32_TO_BE(type);
    guint32 be_len = GUINT32_TO_BE(len);

    g_byte_array_append(buf, (const guint8 *) &be_type, sizeof(be_type));
    g_byte_array_append(buf, (const guint8 *) &be_len, sizeof(be_len));
    if (len > 0)
        g_byte_array_append(buf, data, len);
    if (len % 8 != 0)
        g_byte_array_append(buf, zeros, 8 - len % 8);
}


static void
qcow2FillHeader(Qcow2Header *hdr, const SpQcow2Spec *spec,
                const Qcow2Layout *layout)
{
    memset(hdr, 0, sizeof(*hdr));
    hdr->magic = GUINT32_TO_BE(QCOW2_MAGIC);
    hdr->version = GUINT32_TO_BE(QCOW2_VERSION);
    hdr->cluster_bits = GUINT32_TO_BE(layout->cluster_bits);
    hdr->size = GUINT64_TO_BE(layout->virtual_size);
    hdr->l1_size = GUINT32_TO_BE(layout->l1_size);
    hdr->l1_table_offset = GUINT64_TO_BE(layout->l1_table_offset);
    hdr->refcount_table_offset = GUINT64_TO_BE(layout->refcount_table_offset);
    hdr->refcount_table_clusters =
        GUINT32_TO_BE(layout->refcount_table_clusters);
    if (spec->extended_l2)
        hdr->incompatible_features = GUINT64_TO_BE(QCOW2_INCOMPAT_EXTENDED_L2);
    hdr->refcount_order = GUINT32_TO_BE(QCOW2_REFCOUNT_ORDER);
    hdr->header_length = GUINT32_TO_BE(sizeof(*hdr));
}


/* The used part of cluster 0; the rest of the cluster stays zero. */
static GByteArray *
qcow2BuildHeaderCluster(const SpQcow2Spec *spec, const Qcow2Layout *layout)
{
    GByteArray *buf = g_byte_array_new();
    Qcow2Header hdr;

    /* Reserve the header: its backing file offset depends on the size of
     * the extensions that follow it. */
    g_byte_array_set_size(buf, sizeof(hdr));

    if (spec->backing_file)
        qcow2AppendExtension(buf, QCOW2_EXT_BACKING_FORMAT,
                             spec->backing_format,
                             strlen(spec->backing_format));
    if (layout->cluster_bits >= QCOW2_FEATURE_TABLE_MIN_CLUSTER_BITS)
        qcow2AppendExtension(buf, QCOW2_EXT_FEATURE_NAMES,
                             qcow2FeatureNames, sizeof(qcow2FeatureNames));
    qcow2AppendExtension(buf, QCOW2_EXT_END, NULL, 0);

    qcow2FillHeader(&hdr, spec, layout);
    if (spec->backing_file) {
        size_t len = strlen(spec->backing_file);

        hdr.backing_file_offset = GUINT64_TO_BE(buf->len);
        hdr.backing_file_size = GUINT32_TO_BE(len);
        g_byte_array_append(buf, (const guint8 *) spec->backing_file, len);
    }
    memcpy(buf->data, &hdr, sizeof(hdr));
    return buf;
}


static gboolean
qcow2ValidateClusterBits(const SpQcow2Spec *spec, GError **error)
{
    guint32 cluster_bits = qcow2ClusterBits(spec);

    if (cluster_bits < SP_QCOW2_MIN_CLUSTER_BITS ||
        cluster_bits > SP_QCOW2_MAX_CLUSTER_BITS) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "cluster bits %u out of range: the cluster size must be "
                    "%u to %u bytes", cluster_bits,
                    1U << SP_QCOW2_MIN_CLUSTER_BITS,
                    1U << SP_QCOW2_MAX_CLUSTER_BITS);
        return FALSE;
    }
    /* Subclusters are 1/32 of a cluster and must not be below 512 bytes. */
    if (spec->extended_l2 && cluster_bits < 14) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "extended L2 entries need a cluster size of at least "
                    "16384 bytes, not %u", 1U << cluster_bits);
        return FALSE;
    }
    return TRUE;
}


static gboolean
qcow2ValidateSize(const SpQcow2Spec *spec, GError **error)
{
    guint32 cluster_bits = qcow2ClusterBits(spec);
    guint64 max = qcow2MaxSize(cluster_bits, spec->extended_l2);

    if (spec->virtual_size == 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "virtual size must not be zero");
        return FALSE;
    }
    /* @max is a multiple of the sector size, so comparing before rounding
     * up is the same as comparing after. */
    if (spec->virtual_size > max) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "virtual size %" G_GUINT64_FORMAT " exceeds the maximum "
                    "of %" G_GUINT64_FORMAT " bytes for %u-byte clusters%s",
                    spec->virtual_size, max, 1U << cluster_bits,
                    spec->extended_l2 ? " with extended L2 entries" : "");
        return FALSE;
    }
    return TRUE;
}


static gboolean
qcow2ValidateBacking(const SpQcow2Spec *spec, GError **error)
{
    if (!spec->backing_file) {
        if (spec->backing_format) {
            g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                        "backing format '%s' given without a backing file",
                        spec->backing_format);
            return FALSE;
        }
        return TRUE;
    }
    /* The overlay outlives the working directory it was made in. */
    if (!g_path_is_absolute(spec->backing_file)) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "backing file '%s' is not an absolute path",
                    spec->backing_file);
        return FALSE;
    }
    if (strlen(spec->backing_file) > QCOW2_BACKING_FILE_MAX) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "backing file name is %zu bytes long, qcow2 allows at "
                    "most %u", strlen(spec->backing_file),
                    QCOW2_BACKING_FILE_MAX);
        return FALSE;
    }
    /* Without the format qemu would probe the backing file, and a guest
     * writing a qcow2 header into a raw template could then make qemu
     * open host files named by the guest. */
    if (!spec->backing_format) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "backing file '%s' needs a backing format",
                    spec->backing_file);
        return FALSE;
    }
    if (strcmp(spec->backing_format, "qcow2") != 0 &&
        strcmp(spec->backing_format, "raw") != 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "backing format '%s' is not supported, only 'qcow2' "
                    "and 'raw' are", spec->backing_format);
        return FALSE;
    }
    return TRUE;
}


/* Validate @spec and return the content of cluster 0, filling @layout. */
static GByteArray *
qcow2Prepare(const SpQcow2Spec *spec, Qcow2Layout *layout, GError **error)
{
    g_autoptr(GByteArray) header = NULL;

    if (!qcow2ValidateClusterBits(spec, error) ||
        !qcow2ValidateSize(spec, error) ||
        !qcow2ValidateBacking(spec, error))
        return NULL;

    qcow2ComputeLayout(spec, layout);
    header = qcow2BuildHeaderCluster(spec, layout);

    /* The backing file name has to live in cluster 0 after the header
     * extensions, which caps its length for small clusters. */
    if (header->len > layout->cluster_size) {
        size_t name_len = spec->backing_file ? strlen(spec->backing_file) : 0;

        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "backing file name of %zu bytes does not fit in the "
                    "first cluster of %" G_GUINT64_FORMAT " bytes, at most "
                    "%" G_GUINT64_FORMAT " bytes do; use a larger cluster "
                    "size", name_len, layout->cluster_size,
                    layout->cluster_size - (header->len - name_len));
        return NULL;
    }
    return g_steal_pointer(&header);
}


gboolean
spQcow2SpecValidate(const SpQcow2Spec *spec, GError **error)
{
    Qcow2Layout layout;
    g_autoptr(GByteArray) header = qcow2Prepare(spec, &layout, error);

    return header != NULL;
}


static gboolean
qcow2WriteRefcountTable(int fd, const Qcow2Layout *layout, GError **error)
{
    g_autofree guint64 *table = g_new(guint64, layout->refcount_blocks);
    guint64 i;

    for (i = 0; i < layout->refcount_blocks; i++)
        table[i] = GUINT64_TO_BE(layout->refcount_block_offset +
                                 i * layout->cluster_size);
    return spFullPwrite(fd, table, layout->refcount_blocks * sizeof(*table),
                        layout->refcount_table_offset, error,
                        "cannot write qcow2 image");
}


/* The blocks are contiguous and cover the clusters in order, so the
 * refcounts of all used clusters form one run from the first block. */
static gboolean
qcow2WriteRefcountBlocks(int fd, const Qcow2Layout *layout, GError **error)
{
    g_autofree guint16 *counts = g_new(guint16, layout->used_clusters);
    guint64 i;

    for (i = 0; i < layout->used_clusters; i++)
        counts[i] = GUINT16_TO_BE(1);
    return spFullPwrite(fd, counts, layout->used_clusters * sizeof(*counts),
                        layout->refcount_block_offset, error,
                        "cannot write qcow2 image");
}


gboolean
spQcow2WriteFd(int fd, const SpQcow2Spec *spec, GError **error)
{
    Qcow2Layout layout;
    g_autoptr(GByteArray) header = qcow2Prepare(spec, &layout, error);
    struct stat st;

    if (!header)
        return FALSE;

    /* Holes must read as zeros: old content would become metadata. */
    if (fstat(fd, &st) < 0) {
        return spErrorSetErrno(error, errno, "cannot stat qcow2 image");
    }
    if (st.st_size != 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "cannot write a qcow2 image into a non-empty file");
        return FALSE;
    }

    /* The zero L1 table and the unused refcounts become holes. */
    if (ftruncate(fd, layout.file_size) < 0) {
        return spErrorSetErrno(error, errno, "cannot size qcow2 image to %" G_GUINT64_FORMAT
                               " bytes", layout.file_size);
    }

    return spFullPwrite(fd, header->data, header->len, 0, error,
                        "cannot write qcow2 image") &&
           qcow2WriteRefcountTable(fd, &layout, error) &&
           qcow2WriteRefcountBlocks(fd, &layout, error);
}
