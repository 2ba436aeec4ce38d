/*
 * image_header.c: read the metadata of a qcow2 or raw disk image
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Pool refresh runs this on every file of the pool, and any user who can
 * write a volume controls its bytes, so the file is untrusted: each length
 * and offset taken from it is checked against the file size before it is
 * used, and everything we look at lies in the first cluster, which is read
 * with bounded pread() calls. Field layout: QEMU's docs/interop/qcow2.txt.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "util/full_io.h"
#include "image/image_header.h"

/* Enough for every magic we probe and, for most overlays, for the qcow2
 * header, extensions and backing file name; more of the first cluster is
 * read only once the qcow2 header says it is needed. */
#define IMAGE_PROBE_SIZE 4096

#define QCOW2_MAGIC "QFI\xfb"
#define QCOW2_V2_HEADER_LENGTH 72
#define QCOW2_V3_HEADER_LENGTH 104
#define QCOW2_COMPRESSION_TYPE_OFFSET 104

#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21   /* qemu's limit, 2 MiB */
#define QCOW2_MIN_EXTENDED_L2_CLUSTER_BITS 14

/* Limits qemu enforces when opening an image; an image beyond them is not
 * one qemu (and so the domain) could use. */
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_L1_BYTES (32 * 1024 * 1024)
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_REFCOUNT_ORDER 6

/* Not qemu limits: the data file name ends up in a path, so PATH_MAX
 * bounds it, and a format name is a short word such as "qcow2". */
#define QCOW2_MAX_DATA_FILE_NAME 4095
#define QCOW2_MAX_BACKING_FORMAT 16

#define QCOW2_INCOMPAT_DIRTY (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define QCOW2_INCOMPAT_EXTENDED_L2 (1ULL << 4)
#define QCOW2_INCOMPAT_KNOWN (QCOW2_INCOMPAT_DIRTY | \
                              QCOW2_INCOMPAT_CORRUPT | \
                              QCOW2_INCOMPAT_DATA_FILE | \
                              QCOW2_INCOMPAT_COMPRESSION | \
                              QCOW2_INCOMPAT_EXTENDED_L2)

#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ULL << 0)

#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

#define QCOW2_EXT_END 0x00000000
#define QCOW2_EXT_BACKING_FORMAT 0xe2792aca
#define QCOW2_EXT_FEATURE_NAMES 0x6803f857
#define QCOW2_EXT_DATA_FILE 0x44415441

#define QCOW2_FEATURE_NAME_ENTRY 48
#define QCOW2_FEATURE_NAME_LENGTH 46
#define QCOW2_FEATURE_TYPE_INCOMPAT 0

/* The header fields in host byte order, with the first cluster they came
 * from. A version 2 header reads as a version 3 one with no features. */
typedef struct {
    const guint8 *buf;          /* the first cluster, cut at end of file */
    gsize len;
    guint64 fileSize;

    guint32 version;
    guint64 backingOffset;
    guint32 backingLength;
    guint32 clusterBits;
    guint64 clusterSize;
    guint64 size;
    guint32 cryptMethod;
    guint32 l1Size;
    guint64 l1Offset;
    guint64 refcountOffset;
    guint32 refcountClusters;
    guint32 nbSnapshots;
    guint64 snapshotsOffset;
    guint64 incompatible;
    guint64 compatible;
    guint32 refcountOrder;
    guint32 headerLength;
    guint8 compressionType;
} Qcow2Header;

typedef struct {
    guint64 offset;             /* of the extension's type field */
    guint32 type;
    guint32 len;
    const guint8 *data;
} Qcow2Extension;

typedef struct {
    gsize offset;
    const char *magic;
    gsize len;
    const char *name;
} ImageMagic;

#define IMAGE_MAGIC(offset, magic, name) { offset, magic, sizeof(magic) - 1, name }

/* Formats qemu would recognise; treating them as raw would hand a guest
 * the metadata of another format, or let it write over it. */
static const ImageMagic otherFormats[] = {
    IMAGE_MAGIC(0, "QED\0", "qed"),
    IMAGE_MAGIC(0, "KDMV", "vmdk"),
    IMAGE_MAGIC(0, "# Disk DescriptorFile", "vmdk"),
    IMAGE_MAGIC(0x40, "\x7f\x10\xda\xbe", "vdi"),     /* 0xbeda107f, little endian */
    IMAGE_MAGIC(0, "vhdxfile", "vhdx"),
    IMAGE_MAGIC(0, "conectix", "vpc"),
    IMAGE_MAGIC(0, "LUKS\xba\xbe", "luks"),
    IMAGE_MAGIC(0, "WithoutFreeSpace", "parallels"),
    IMAGE_MAGIC(0, "WithouFreSpacExt", "parallels"),
    IMAGE_MAGIC(0, "Bochs Virtual HD Image", "bochs"),
    IMAGE_MAGIC(0, "#!/bin/sh\n#V2.0 Format", "cloop"),
};


static guint32
readBE32(const guint8 *p)
{
    guint32 v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_BE(v);
}


static guint64
readBE64(const guint8 *p)
{
    guint64 v;

    memcpy(&v, p, sizeof(v));
    return GUINT64_FROM_BE(v);
}


/* Whether [@offset, @offset + @length) lies within [0, @limit); written so
 * that no sum can wrap. */
static gboolean
rangeFits(guint64 offset, guint64 length, guint64 limit)
{
    return offset <= limit && length <= limit - offset;
}


static gboolean G_GNUC_PRINTF(2, 3)
qcow2Bad(GError **error, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE, "qcow2 header: %s", msg);
    return FALSE;
}


static gboolean
imageReadAt(int fd, guint8 *buf, gsize len, guint64 offset, GError **error)
{
    gssize n = spFullPread(fd, buf, len, offset, error,
                           "cannot read image header at offset %" G_GUINT64_FORMAT,
                           offset);

    if (n < 0)
        return FALSE;
    /* The length came from fstat(), so only a concurrent truncate gets
     * us here; the bytes we would parse are gone. */
    if ((gsize) n < len) {
        g_set_error(error, SP_ERROR, SP_ERROR_IO,
                    "image shrank to %" G_GUINT64_FORMAT " bytes while its header was read",
                    offset + n);
        return FALSE;
    }
    return TRUE;
}


static const char *
imageProbeOther(const guint8 *buf, gsize len)
{
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(otherFormats); i++) {
        const ImageMagic *m = &otherFormats[i];

        if (rangeFits(m->offset, m->len, len) &&
            memcmp(buf + m->offset, m->magic, m->len) == 0)
            return m->name;
    }
    return NULL;
}


static gboolean
qcow2HasMagic(const guint8 *buf, gsize len)
{
    return len >= 4 && memcmp(buf, QCOW2_MAGIC, 4) == 0;
}


/* Checks the version and that the fixed part of the header is there, and
 * decodes it. @hdr->buf is still the probe buffer at this point. */
static gboolean
qcow2DecodeHeader(Qcow2Header *hdr, GError **error)
{
    const guint8 *p = hdr->buf;

    if (hdr->len < 8)
        return qcow2Bad(error, "file is %zu bytes, too short for a qcow2 header",
                        hdr->len);

    hdr->version = readBE32(p + 4);
    if (hdr->version != 2 && hdr->version != 3) {
        g_set_error(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                    "qcow2 version %u is not supported", hdr->version);
        return FALSE;
    }

    hdr->headerLength = QCOW2_V2_HEADER_LENGTH;
    if (hdr->version == 3) {
        if (hdr->len < QCOW2_V3_HEADER_LENGTH)
            return qcow2Bad(error, "file is %zu bytes, too short for a version 3 header",
                            hdr->len);
        hdr->headerLength = readBE32(p + 100);
    } else if (hdr->len < QCOW2_V2_HEADER_LENGTH) {
        return qcow2Bad(error, "file is %zu bytes, too short for a version 2 header",
                        hdr->len);
    }

    hdr->backingOffset = readBE64(p + 8);
    hdr->backingLength = readBE32(p + 16);
    hdr->clusterBits = readBE32(p + 20);
    hdr->size = readBE64(p + 24);
    hdr->cryptMethod = readBE32(p + 32);
    hdr->l1Size = readBE32(p + 36);
    hdr->l1Offset = readBE64(p + 40);
    hdr->refcountOffset = readBE64(p + 48);
    hdr->refcountClusters = readBE32(p + 56);
    hdr->nbSnapshots = readBE32(p + 60);
    hdr->snapshotsOffset = readBE64(p + 64);
    hdr->refcountOrder = 4;

    if (hdr->version == 3) {
        hdr->incompatible = readBE64(p + 72);
        hdr->compatible = readBE64(p + 80);
        hdr->refcountOrder = readBE32(p + 96);
    }
    return TRUE;
}


static gboolean
qcow2CheckClusterBits(Qcow2Header *hdr, GError **error)
{
    if (hdr->clusterBits < QCOW2_MIN_CLUSTER_BITS ||
        hdr->clusterBits > QCOW2_MAX_CLUSTER_BITS)
        return qcow2Bad(error, "cluster_bits %u is outside %d..%d",
                        hdr->clusterBits, QCOW2_MIN_CLUSTER_BITS,
                        QCOW2_MAX_CLUSTER_BITS);
    hdr->clusterSize = 1ULL << hdr->clusterBits;
    return TRUE;
}


/* The header and its extensions live in the first cluster: read all of it
 * (bounded by the 2 MiB cluster limit) unless the probe already holds it. */
static gboolean
qcow2ReadFirstCluster(int fd,
                      Qcow2Header *hdr,
                      guint8 **owned,
                      GError **error)
{
    gsize want = MIN(hdr->clusterSize, hdr->fileSize);

    /* Everything parsed from the first cluster lies before the end of the
     * backing file name, when there is one, so the probe usually covers an
     * overlay whole: pool refresh reads thousands of them. */
    if (hdr->backingOffset && rangeFits(hdr->backingOffset, hdr->backingLength, want))
        want = hdr->backingOffset + hdr->backingLength;

    if (want <= hdr->len) {
        hdr->len = want;
        return TRUE;
    }

    *owned = g_malloc(want);
    if (!imageReadAt(fd, *owned, want, 0, error))
        return FALSE;
    hdr->buf = *owned;
    hdr->len = want;
    return TRUE;
}


static gboolean
qcow2CheckHeaderLength(const Qcow2Header *hdr, GError **error)
{
    if (hdr->version == 2)
        return TRUE;

    if (hdr->headerLength < QCOW2_V3_HEADER_LENGTH ||
        hdr->headerLength % 8 != 0)
        return qcow2Bad(error, "header_length %u is not a multiple of 8 of at least %d",
                        hdr->headerLength, QCOW2_V3_HEADER_LENGTH);
    if (hdr->headerLength > hdr->fileSize)
        return qcow2Bad(error, "header_length %u extends past end of file",
                        hdr->headerLength);
    if (hdr->headerLength > hdr->clusterSize)
        return qcow2Bad(error, "header_length %u is larger than a cluster",
                        hdr->headerLength);
    return TRUE;
}


/* Extensions sit between the header and the backing file name, or the end
 * of the first cluster when there is none. */
static guint64
qcow2ExtensionAreaEnd(const Qcow2Header *hdr)
{
    guint64 end = hdr->backingOffset ? hdr->backingOffset : hdr->clusterSize;

    return MIN(end, hdr->len);
}


static const char *
qcow2ExtensionAreaEndName(const Qcow2Header *hdr)
{
    guint64 end = qcow2ExtensionAreaEnd(hdr);

    if (end == hdr->fileSize)
        return "end of file";
    if (hdr->backingOffset && end == hdr->backingOffset)
        return "the backing file name";
    return "the first cluster";
}


/* Steps @ext from the extension at @*offset to the next one.
 * Returns 1 with @ext filled in, 0 at the end of the list, -1 on error. */
static int
qcow2NextExtension(const Qcow2Header *hdr,
                   guint64 *offset,
                   Qcow2Extension *ext,
                   GError **error)
{
    guint64 end = qcow2ExtensionAreaEnd(hdr);
    guint64 dataOffset;

    if (*offset >= end)
        return 0;
    if (!rangeFits(*offset, 8, end)) {
        qcow2Bad(error, "header extension at offset %" G_GUINT64_FORMAT " is cut off by %s",
                 *offset, qcow2ExtensionAreaEndName(hdr));
        return -1;
    }

    ext->offset = *offset;
    ext->type = readBE32(hdr->buf + *offset);
    ext->len = readBE32(hdr->buf + *offset + 4);
    if (ext->type == QCOW2_EXT_END)
        return 0;

    dataOffset = *offset + 8;
    if (!rangeFits(dataOffset, ext->len, end)) {
        qcow2Bad(error, "header extension 0x%08x (offset %" G_GUINT64_FORMAT
                 ", length %u) extends past %s",
                 ext->type, ext->offset, ext->len, qcow2ExtensionAreaEndName(hdr));
        return -1;
    }
    ext->data = hdr->buf + dataOffset;

    /* Padding past the area is harmless: the loop just ends there. */
    *offset = dataOffset + ((guint64) ext->len + 7) / 8 * 8;
    return 1;
}


/* The name the image gives an incompatible feature bit we do not know, so
 * that the error tells the user what kind of image this is. Best effort:
 * a broken extension area just means no name. */
static char *
qcow2FeatureName(const Qcow2Header *hdr, guint bit)
{
    guint64 offset = hdr->headerLength;
    Qcow2Extension ext;

    while (qcow2NextExtension(hdr, &offset, &ext, NULL) > 0) {
        gsize i;

        if (ext.type != QCOW2_EXT_FEATURE_NAMES)
            continue;
        for (i = 0; i + QCOW2_FEATURE_NAME_ENTRY <= ext.len;
             i += QCOW2_FEATURE_NAME_ENTRY) {
            const guint8 *entry = ext.data + i;
            char *name;

            if (entry[0] != QCOW2_FEATURE_TYPE_INCOMPAT || entry[1] != bit)
                continue;
            name = g_strndup((const char *) entry + 2, QCOW2_FEATURE_NAME_LENGTH);
            return g_strcanon(name, G_CSET_A_2_Z G_CSET_a_2_z G_CSET_DIGITS
                              " _-.,:()/", '?');
        }
    }
    return NULL;
}


static gboolean
qcow2CheckFeatures(const Qcow2Header *hdr, GError **error)
{
    guint64 unknown = hdr->incompatible & ~QCOW2_INCOMPAT_KNOWN;
    g_autofree char *name = NULL;
    guint bit;

    if (unknown == 0)
        return TRUE;

    bit = __builtin_ctzll(unknown);
    name = qcow2FeatureName(hdr, bit);
    g_set_error(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                "qcow2 image uses unknown incompatible feature bit %u%s%s%s",
                bit, name ? " (" : "", name ? name : "", name ? ")" : "");
    return FALSE;
}


static gboolean
qcow2CheckFields(const Qcow2Header *hdr, GError **error)
{
    if (hdr->size > G_MAXINT64)
        return qcow2Bad(error, "virtual size %" G_GUINT64_FORMAT " is larger than 2^63 - 1",
                        hdr->size);
    if ((hdr->incompatible & QCOW2_INCOMPAT_EXTENDED_L2) &&
        hdr->clusterBits < QCOW2_MIN_EXTENDED_L2_CLUSTER_BITS)
        return qcow2Bad(error, "extended L2 entries need cluster_bits of at least %d, not %u",
                        QCOW2_MIN_EXTENDED_L2_CLUSTER_BITS, hdr->clusterBits);
    if (hdr->cryptMethod > 2)
        return qcow2Bad(error, "unknown encryption method %u", hdr->cryptMethod);
    if (hdr->refcountOrder > QCOW2_MAX_REFCOUNT_ORDER)
        return qcow2Bad(error, "refcount_order %u is larger than %d",
                        hdr->refcountOrder, QCOW2_MAX_REFCOUNT_ORDER);
    return TRUE;
}


static gboolean
qcow2ReadCompressionType(Qcow2Header *hdr, GError **error)
{
    gboolean flagged = !!(hdr->incompatible & QCOW2_INCOMPAT_COMPRESSION);

    /* The field is absent from shorter headers and then means zlib. */
    if (hdr->version == 3 && hdr->headerLength > QCOW2_COMPRESSION_TYPE_OFFSET)
        hdr->compressionType = hdr->buf[QCOW2_COMPRESSION_TYPE_OFFSET];

    if (flagged != (hdr->compressionType != QCOW2_COMPRESSION_ZLIB))
        return qcow2Bad(error, "compression type %u does not match incompatible feature bit 3",
                        hdr->compressionType);
    if (hdr->compressionType > QCOW2_COMPRESSION_ZSTD) {
        g_set_error(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                    "qcow2 compression type %u is not supported",
                    hdr->compressionType);
        return FALSE;
    }
    return TRUE;
}


static gboolean
qcow2CheckBackingFormat(const Qcow2Extension *ext, GError **error)
{
    guint32 i;

    if (ext->len == 0 || ext->len > QCOW2_MAX_BACKING_FORMAT)
        return qcow2Bad(error, "backing format name of %u bytes is not 1..%d bytes",
                        ext->len, QCOW2_MAX_BACKING_FORMAT);
    for (i = 0; i < ext->len; i++) {
        if (!g_ascii_isgraph(ext->data[i]))
            return qcow2Bad(error, "backing format name has an invalid byte 0x%02x",
                            ext->data[i]);
    }
    return TRUE;
}


/* A file name as stored by qemu: not NUL terminated, so an embedded NUL
 * would make us and qemu see different names. */
static gboolean
qcow2CheckFileName(const char *what,
                   const guint8 *data,
                   guint32 len,
                   guint32 maxLen,
                   GError **error)
{
    if (len == 0)
        return qcow2Bad(error, "%s is empty", what);
    if (len > maxLen)
        return qcow2Bad(error, "%s length %u is larger than %u", what, len, maxLen);
    if (memchr(data, '\0', len))
        return qcow2Bad(error, "%s contains a NUL byte", what);
    return TRUE;
}


/* Each extension type may appear only once: a second copy would make the
 * image mean different things to different readers. */
static gboolean
qcow2TakeString(char **dst,
                const Qcow2Extension *ext,
                const char *what,
                GError **error)
{
    if (*dst)
        return qcow2Bad(error, "duplicate %s extension at offset %" G_GUINT64_FORMAT,
                        what, ext->offset);
    *dst = g_strndup((const char *) ext->data, ext->len);
    return TRUE;
}


static gboolean
qcow2ParseExtensions(const Qcow2Header *hdr, SpImageInfo *info, GError **error)
{
    guint64 offset = hdr->headerLength;
    Qcow2Extension ext;
    int rc;

    while ((rc = qcow2NextExtension(hdr, &offset, &ext, error)) > 0) {
        switch (ext.type) {
        case QCOW2_EXT_BACKING_FORMAT:
            if (!qcow2CheckBackingFormat(&ext, error) ||
                !qcow2TakeString(&info->backing_format, &ext, "backing format", error))
                return FALSE;
            break;
        case QCOW2_EXT_DATA_FILE:
            if (!qcow2CheckFileName("external data file name", ext.data, ext.len,
                                    QCOW2_MAX_DATA_FILE_NAME, error) ||
                !qcow2TakeString(&info->data_file, &ext, "external data file", error))
                return FALSE;
            break;
        default:
            /* Feature names only matter for unknown bits, see
             * qcow2FeatureName; other extensions are safe to ignore. */
            break;
        }
    }
    return rc == 0;
}


static gboolean
qcow2ReadBackingName(const Qcow2Header *hdr, SpImageInfo *info, GError **error)
{
    guint64 offset = hdr->backingOffset;
    guint32 len = hdr->backingLength;

    if (offset == 0)
        return TRUE;

    if (!rangeFits(offset, len, hdr->fileSize))
        return qcow2Bad(error, "backing file name (offset %" G_GUINT64_FORMAT
                        ", length %u) extends past end of file", offset, len);
    if (!rangeFits(offset, len, hdr->clusterSize))
        return qcow2Bad(error, "backing file name (offset %" G_GUINT64_FORMAT
                        ", length %u) extends past the first cluster", offset, len);
    if (offset < hdr->headerLength)
        return qcow2Bad(error, "backing file name (offset %" G_GUINT64_FORMAT
                        ") overlaps the %u byte header", offset, hdr->headerLength);
    if (!qcow2CheckFileName("backing file name", hdr->buf + offset, len,
                            QCOW2_MAX_BACKING_NAME, error))
        return FALSE;

    /* Both checks above bound the name by min(file size, cluster size),
     * which is exactly what hdr->buf holds. */
    info->backing_file = g_strndup((const char *) hdr->buf + offset, len);
    return TRUE;
}


/* How many L1 entries it takes to map @hdr->size bytes. */
static guint64
qcow2L1EntriesNeeded(const Qcow2Header *hdr)
{
    guint l2EntryBits = (hdr->incompatible & QCOW2_INCOMPAT_EXTENDED_L2) ? 4 : 3;
    guint64 span = 1ULL << (2 * hdr->clusterBits - l2EntryBits);

    /* size <= 2^63 - 1 and span <= 2^39, so this cannot wrap */
    return (hdr->size + span - 1) / span;
}


/* A table we do not read must still start at a cluster boundary after the
 * header and inside the file, or the image is not one qemu would open. */
static gboolean
qcow2CheckTableOffset(const Qcow2Header *hdr,
                      const char *what,
                      guint64 offset,
                      GError **error)
{
    if (offset == 0)
        return qcow2Bad(error, "%s offset 0 overlaps the header", what);
    if (offset % hdr->clusterSize != 0)
        return qcow2Bad(error, "%s offset %" G_GUINT64_FORMAT
                        " is not aligned to the %" G_GUINT64_FORMAT " byte cluster size",
                        what, offset, hdr->clusterSize);
    if (offset >= hdr->fileSize)
        return qcow2Bad(error, "%s offset %" G_GUINT64_FORMAT " is past end of file",
                        what, offset);
    return TRUE;
}


static gboolean
qcow2CheckL1Table(const Qcow2Header *hdr, GError **error)
{
    guint64 bytes = (guint64) hdr->l1Size * 8;
    guint64 needed = qcow2L1EntriesNeeded(hdr);

    if (hdr->l1Size < needed)
        return qcow2Bad(error, "L1 table size %u is too small for virtual size %"
                        G_GUINT64_FORMAT " (needs %" G_GUINT64_FORMAT ")",
                        hdr->l1Size, hdr->size, needed);
    /* An empty image has no L1 table, and qemu leaves its offset at 0. */
    if (hdr->l1Size == 0)
        return TRUE;
    if (bytes > QCOW2_MAX_L1_BYTES)
        return qcow2Bad(error, "L1 table size %u is larger than qemu's %d byte limit",
                        hdr->l1Size, QCOW2_MAX_L1_BYTES);
    /* Unlike the other tables, qemu writes every L1 entry, so all of the
     * table must be in the file. */
    if (!rangeFits(hdr->l1Offset, bytes, hdr->fileSize))
        return qcow2Bad(error, "L1 table (offset %" G_GUINT64_FORMAT ", length %"
                        G_GUINT64_FORMAT ") extends past end of file",
                        hdr->l1Offset, bytes);
    return qcow2CheckTableOffset(hdr, "L1 table", hdr->l1Offset, error);
}


static gboolean
qcow2CheckTables(const Qcow2Header *hdr, GError **error)
{
    if (!qcow2CheckL1Table(hdr, error))
        return FALSE;
    if (!qcow2CheckTableOffset(hdr, "refcount table", hdr->refcountOffset, error))
        return FALSE;
    if (hdr->refcountClusters == 0)
        return qcow2Bad(error, "refcount table has no clusters");
    if (hdr->nbSnapshots > QCOW2_MAX_SNAPSHOTS)
        return qcow2Bad(error, "%u snapshots is more than qemu's limit of %d",
                        hdr->nbSnapshots, QCOW2_MAX_SNAPSHOTS);
    if (hdr->nbSnapshots > 0 &&
        !qcow2CheckTableOffset(hdr, "snapshot table", hdr->snapshotsOffset, error))
        return FALSE;
    return TRUE;
}


static void
qcow2FillInfo(const Qcow2Header *hdr, SpImageInfo *info)
{
    info->format = SP_IMAGE_FORMAT_QCOW2;
    info->virtual_size = hdr->size;
    info->qcow2_version = hdr->version;
    info->cluster_bits = hdr->clusterBits;
    info->cluster_size = hdr->clusterSize;
    info->dirty = !!(hdr->incompatible & QCOW2_INCOMPAT_DIRTY);
    info->corrupt = !!(hdr->incompatible & QCOW2_INCOMPAT_CORRUPT);
    info->external_data_file = !!(hdr->incompatible & QCOW2_INCOMPAT_DATA_FILE);
    info->extended_l2 = !!(hdr->incompatible & QCOW2_INCOMPAT_EXTENDED_L2);
    info->lazy_refcounts = !!(hdr->compatible & QCOW2_COMPAT_LAZY_REFCOUNTS);
    info->compression_type = hdr->compressionType;
}


static gboolean
qcow2Read(int fd,
          const guint8 *probe,
          gsize probeLen,
          SpImageInfo *info,
          GError **error)
{
    Qcow2Header hdr = { .buf = probe, .len = probeLen, .fileSize = info->file_size };
    g_autofree guint8 *cluster = NULL;

    if (!qcow2DecodeHeader(&hdr, error) ||
        !qcow2CheckClusterBits(&hdr, error) ||
        !qcow2ReadFirstCluster(fd, &hdr, &cluster, error) ||
        !qcow2CheckHeaderLength(&hdr, error) ||
        !qcow2CheckFeatures(&hdr, error) ||
        !qcow2CheckFields(&hdr, error) ||
        !qcow2ReadCompressionType(&hdr, error) ||
        !qcow2ParseExtensions(&hdr, info, error) ||
        !qcow2ReadBackingName(&hdr, info, error) ||
        !qcow2CheckTables(&hdr, error))
        return FALSE;

    qcow2FillInfo(&hdr, info);
    return TRUE;
}


static gboolean
imageReadInfo(int fd, const struct stat *sbp, SpImageInfo *info, GError **error)
{
    struct stat sb;
    g_autofree guint8 *probe = NULL;
    gsize probeLen;

    if (sbp) {
        sb = *sbp;
    } else if (fstat(fd, &sb) < 0) {
        return spErrorSetErrno(error, errno, "cannot stat image");
    }
    if (!S_ISREG(sb.st_mode)) {
        g_set_error_literal(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                            "not a regular file");
        return FALSE;
    }

    info->file_size = sb.st_size;
    info->allocation = (guint64) sb.st_blocks * 512;

    probeLen = MIN(info->file_size, IMAGE_PROBE_SIZE);
    probe = g_malloc(MAX(probeLen, 1));
    if (!imageReadAt(fd, probe, probeLen, 0, error))
        return FALSE;

    if (qcow2HasMagic(probe, probeLen))
        return qcow2Read(fd, probe, probeLen, info, error);

    /* We do not parse the other formats: the file size is the best
     * capacity we can offer, as libvirt does for formats it cannot read. */
    info->virtual_size = info->file_size;
    info->other_format = imageProbeOther(probe, probeLen);
    info->format = info->other_format ? SP_IMAGE_FORMAT_OTHER : SP_IMAGE_FORMAT_RAW;
    return TRUE;
}


gboolean
spImageInfoReadFd(int fd, SpImageInfo *info, GError **error)
{
    return spImageInfoReadFdStat(fd, NULL, info, error);
}


gboolean
spImageInfoReadFdStat(int fd, const struct stat *sb, SpImageInfo *info,
                      GError **error)
{
    SpImageInfo tmp = { 0 };

    /* Fill a local copy so that @info is never left half set on failure. */
    if (!imageReadInfo(fd, sb, &tmp, error)) {
        spImageInfoClear(&tmp);
        memset(info, 0, sizeof(*info));
        return FALSE;
    }
    *info = tmp;
    return TRUE;
}


gboolean
spImageInfoRead(const char *path, SpImageInfo *info, GError **error)
{
    int fd;
    gboolean ret;

    memset(info, 0, sizeof(*info));

    /* O_NOFOLLOW: a volume that is a symlink could point anywhere on the
     * host. O_NONBLOCK: opening a FIFO must not wait for a writer; it is
     * then refused as not a regular file. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ELOOP)
            g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                        "image '%s' is a symbolic link, not a regular file", path);
        else
            spErrorSetErrno(error, errno, "cannot open image '%s'", path);
        return FALSE;
    }

    ret = spImageInfoReadFd(fd, info, error);
    if (!ret)
        g_prefix_error(error, "image '%s': ", path);
    close(fd);
    return ret;
}


void
spImageInfoClear(SpImageInfo *info)
{
    if (!info)
        return;
    g_free(info->backing_file);
    g_free(info->backing_format);
    g_free(info->data_file);
    memset(info, 0, sizeof(*info));
}


void
spImageInfoCopy(SpImageInfo *dst, const SpImageInfo *src)
{
    *dst = *src;
    dst->backing_file = g_strdup(src->backing_file);
    dst->backing_format = g_strdup(src->backing_format);
    dst->data_file = g_strdup(src->data_file);
}


const char *
spImageFormatName(const SpImageInfo *info)
{
    switch (info->format) {
    case SP_IMAGE_FORMAT_RAW:
        return "raw";
    case SP_IMAGE_FORMAT_QCOW2:
        return "qcow2";
    case SP_IMAGE_FORMAT_OTHER:
        return info->other_format ? info->other_format : "unknown";
    }
    return "unknown";
}
