/*
 * test_image_header.c: unit tests of the image header reader
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * qemu-img is the oracle for images it creates; malformed images are real
 * ones with a few header bytes patched, the way a hostile guest owner or a
 * torn write would leave them.
 */

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "image/image_header.h"
#include "test_helpers.h"

/* Header field offsets, from QEMU's docs/interop/qcow2.txt. */
#define OFF_VERSION 4
#define OFF_BACKING_OFFSET 8
#define OFF_BACKING_LENGTH 16
#define OFF_CLUSTER_BITS 20
#define OFF_SIZE 24
#define OFF_CRYPT_METHOD 32
#define OFF_L1_SIZE 36
#define OFF_L1_OFFSET 40
#define OFF_REFCOUNT_OFFSET 48
#define OFF_NB_SNAPSHOTS 60
#define OFF_SNAPSHOTS_OFFSET 64
#define OFF_INCOMPATIBLE 72
#define OFF_REFCOUNT_ORDER 96
#define OFF_HEADER_LENGTH 100
#define OFF_COMPRESSION_TYPE 104

#define EXT_BACKING_FORMAT 0xe2792aca
#define EXT_FEATURE_NAMES 0x6803f857

#define FUZZ_ITERATIONS 2000
#define FUZZ_WINDOW 4096


/* Runs qemu-img with the NULL-terminated arguments; FALSE when it fails,
 * for the options some builds lack. */
static gboolean G_GNUC_NULL_TERMINATED
qemuImg(const char *first, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autofree char *err = NULL;
    const char *arg;
    va_list ap;
    int rc;

    g_ptr_array_add(argv, (gpointer) "qemu-img");
    va_start(ap, first);
    for (arg = first; arg; arg = va_arg(ap, const char *))
        g_ptr_array_add(argv, (gpointer) arg);
    va_end(ap);
    g_ptr_array_add(argv, NULL);

    rc = spTestRun((const char * const *) argv->pdata, NULL, &err);
    if (rc != 0)
        g_test_message("qemu-img %s failed (%d): %s", first, rc, err ? err : "");
    return rc == 0;
}


static char *
qemuImgInfo(const char *path)
{
    const char *argv[] = { "qemu-img", "info", "--output=json", path, NULL };
    char *out = NULL;

    g_assert_cmpint(spTestRun(argv, &out, NULL), ==, 0);
    return out;
}


static char *
pathIn(const char *dir, const char *name)
{
    return g_build_filename(dir, name, NULL);
}


static void
writeBE32(const char *path, guint64 offset, guint32 value)
{
    guint32 be = GUINT32_TO_BE(value);

    spTestWriteAt(path, offset, &be, sizeof(be));
}


static void
writeBE64(const char *path, guint64 offset, guint64 value)
{
    guint64 be = GUINT64_TO_BE(value);

    spTestWriteAt(path, offset, &be, sizeof(be));
}


static void
writeByte(const char *path, guint64 offset, guint8 value)
{
    spTestWriteAt(path, offset, &value, 1);
}


static guint8 *
readAll(const char *path, gsize *len)
{
    g_autoptr(GError) error = NULL;
    char *data = NULL;

    g_assert_true(g_file_get_contents(path, &data, len, &error));
    g_assert_no_error(error);
    return (guint8 *) data;
}


static void
writeAll(const char *path, const guint8 *data, gsize len)
{
    g_autoptr(GError) error = NULL;

    g_assert_true(g_file_set_contents(path, (const char *) data, len, &error));
    g_assert_no_error(error);
}


static void
copyFile(const char *src, const char *dst)
{
    gsize len;
    g_autofree guint8 *data = readAll(src, &len);

    writeAll(dst, data, len);
}


/* Offset of the first header extension of @type in the qcow2 image at
 * @path; the images of these tests are made by qemu-img, so trusted. */
static guint32
be32At(const guint8 *data, guint64 offset)
{
    guint32 v;

    memcpy(&v, data + offset, sizeof(v));
    return GUINT32_FROM_BE(v);
}


static guint64
findExtension(const char *path, guint32 type)
{
    gsize len;
    g_autofree guint8 *data = readAll(path, &len);
    guint64 offset = 72;

    if (be32At(data, OFF_VERSION) == 3)
        offset = be32At(data, OFF_HEADER_LENGTH);
    while (offset + 8 <= len) {
        guint32 t = be32At(data, offset);
        guint32 l = be32At(data, offset + 4);

        if (t == type)
            return offset;
        g_assert_cmpuint(t, !=, 0);
        offset += 8 + (l + 7) / 8 * 8;
    }
    g_assert_not_reached();
}


static void
assertReadOk(const char *path, SpImageInfo *info)
{
    g_autoptr(GError) error = NULL;

    if (!spImageInfoRead(path, info, &error))
        g_test_message("%s: %s", path, error->message);
    g_assert_no_error(error);
}


static void
assertZeroed(const SpImageInfo *info)
{
    static const SpImageInfo zero = { 0 };

    g_assert_cmpmem(info, sizeof(*info), &zero, sizeof(zero));
}


/* The read of @path fails with @code and a message containing @needle. */
static void
assertReadFails(const char *path, SpErrorCode code, const char *needle)
{
    g_autoptr(GError) error = NULL;
    SpImageInfo info;

    memset(&info, 0xaa, sizeof(info));
    g_assert_false(spImageInfoRead(path, &info, &error));
    g_assert_error(error, SP_ERROR, (gint) code);
    g_test_message("%s: %s", path, error->message);
    if (!strstr(error->message, needle))
        g_error("message \"%s\" lacks \"%s\"", error->message, needle);
    assertZeroed(&info);
}


static void
assertStatMatches(const char *path, const SpImageInfo *info)
{
    GStatBuf sb;

    g_assert_cmpint(g_stat(path, &sb), ==, 0);
    g_assert_cmpuint(info->file_size, ==, sb.st_size);
    g_assert_cmpuint(info->allocation, ==, (guint64) sb.st_blocks * 512);
}


static void
assertStringMatches(const char *json, const char *key, const char *actual)
{
    g_autofree char *expected = spTestJsonString(json, key);

    g_assert_cmpstr(actual, ==, expected);
}


static void
assertBoolMatches(const char *json, const char *key, gboolean actual)
{
    gboolean expected = FALSE;

    /* qemu leaves out the v3 only fields for v2 images: they are false */
    spTestJsonBool(json, key, &expected);
    g_assert_cmpint(!!actual, ==, !!expected);
}


static void
assertQcow2Matches(const char *json, const SpImageInfo *info)
{
    g_autofree char *compat = spTestJsonString(json, "compat");
    g_autofree char *compression = spTestJsonString(json, "compression-type");
    gint64 clusterSize = 0;

    g_assert_true(spTestJsonInt(json, "cluster-size", &clusterSize));
    g_assert_cmpuint(info->cluster_size, ==, clusterSize);
    g_assert_cmpuint(1ULL << info->cluster_bits, ==, clusterSize);
    g_assert_cmpuint(info->qcow2_version, ==,
                     g_strcmp0(compat, "0.10") == 0 ? 2 : 3);
    g_assert_cmpstr(info->compression_type ? "zstd" : "zlib", ==,
                    compression ? compression : "zlib");

    assertStringMatches(json, "backing-filename", info->backing_file);
    assertStringMatches(json, "backing-filename-format", info->backing_format);
    assertStringMatches(json, "data-file", info->data_file);
    assertBoolMatches(json, "dirty-flag", info->dirty);
    assertBoolMatches(json, "corrupt", info->corrupt);
    assertBoolMatches(json, "extended-l2", info->extended_l2);
    assertBoolMatches(json, "lazy-refcounts", info->lazy_refcounts);
    g_assert_cmpint(info->external_data_file, ==, info->data_file != NULL);
}


/* Reads @path and checks every field against `qemu-img info`. */
static void
assertMatchesQemu(const char *path)
{
    g_autofree char *json = qemuImgInfo(path);
    g_autofree char *format = spTestJsonString(json, "format");
    SpImageInfo info;
    gint64 size = -1;

    assertReadOk(path, &info);
    g_test_message("%s: %s", path, json);

    g_assert_cmpstr(spImageFormatName(&info), ==, format);
    g_assert_true(spTestJsonInt(json, "virtual-size", &size));
    assertStatMatches(path, &info);

    if (info.format == SP_IMAGE_FORMAT_QCOW2) {
        g_assert_cmpuint(info.virtual_size, ==, size);
        assertQcow2Matches(json, &info);
    } else {
        /* qemu rounds a raw file up to whole sectors; the pool reports
         * the bytes that are there, as libvirt does. */
        g_assert_cmpuint(info.virtual_size, ==, info.file_size);
        g_assert_cmpuint((info.virtual_size + 511) / 512 * 512, ==, size);
        g_assert_null(info.backing_file);
    }

    spImageInfoClear(&info);
    assertZeroed(&info);
}


static gboolean
needQemuImg(void)
{
    if (spTestHaveQemuImg())
        return TRUE;
    g_test_skip("qemu-img is not installed");
    return FALSE;
}


/* A fresh 1 GiB qcow2 v3 image with a raw backing file, for patching. */
static char *
makeBackedImage(const char *dir)
{
    g_autofree char *base = pathIn(dir, "base.raw");
    char *img = pathIn(dir, "good.qcow2");

    g_assert_true(qemuImg("create", "-q", "-f", "raw", base, "1M", NULL));
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw",
                          img, "1G", NULL));
    return img;
}


/* A copy of a fresh 1 GiB qcow2 v3 image without backing file. */
static char *
makePlainImage(const char *dir, const char *name)
{
    char *img = pathIn(dir, name);

    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", img, "1G", NULL));
    return img;
}


static void
testQcow2Versions(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *v2 = NULL;
    g_autofree char *v3 = NULL;
    g_autofree char *empty = NULL;
    g_autofree char *big = NULL;
    SpImageInfo info;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    v2 = pathIn(dir, "v2.qcow2");
    v3 = pathIn(dir, "v3.qcow2");
    empty = pathIn(dir, "empty.qcow2");
    big = pathIn(dir, "big.qcow2");

    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", "compat=0.10",
                          v2, "10G", NULL));
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", "compat=1.1",
                          v3, "1000000000", NULL));
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", empty, "0", NULL));
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", big, "1P", NULL));

    assertMatchesQemu(v2);
    assertMatchesQemu(v3);
    assertMatchesQemu(empty);
    assertMatchesQemu(big);

    assertReadOk(v2, &info);
    g_assert_cmpuint(info.qcow2_version, ==, 2);
    g_assert_cmpuint(info.format, ==, SP_IMAGE_FORMAT_QCOW2);
    spImageInfoClear(&info);

    assertReadOk(v3, &info);
    g_assert_cmpuint(info.qcow2_version, ==, 3);
    g_assert_cmpuint(info.virtual_size, ==, 1000000000);
    spImageInfoClear(&info);

    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testQcow2ClusterSizes(void)
{
    static const char *sizes[] = { "512", "4096", "65536", "2M" };
    static const guint32 bits[] = { 9, 12, 16, 21 };
    g_autofree char *dir = NULL;
    gsize i;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();

    for (i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autofree char *img = g_strdup_printf("%s/c%s.qcow2", dir, sizes[i]);
        g_autofree char *opt = g_strdup_printf("cluster_size=%s", sizes[i]);
        SpImageInfo info;

        g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", opt,
                              img, "3G", NULL));
        assertMatchesQemu(img);
        assertReadOk(img, &info);
        g_assert_cmpuint(info.cluster_bits, ==, bits[i]);
        spImageInfoClear(&info);
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testQcow2Backing(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *base = NULL;
    g_autofree char *mid = NULL;
    g_autofree char *absV3 = NULL;
    g_autofree char *relV3 = NULL;
    g_autofree char *absV2 = NULL;
    g_autofree char *relV2 = NULL;
    g_autofree char *small = NULL;
    SpImageInfo info;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    base = pathIn(dir, "base.raw");
    mid = pathIn(dir, "mid.qcow2");
    absV3 = pathIn(dir, "abs-v3.qcow2");
    relV3 = pathIn(dir, "rel-v3.qcow2");
    absV2 = pathIn(dir, "abs-v2.qcow2");
    relV2 = pathIn(dir, "rel-v2.qcow2");
    small = pathIn(dir, "small-cluster.qcow2");

    g_assert_true(qemuImg("create", "-q", "-f", "raw", base, "64M", NULL));
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw",
                          mid, NULL));
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-b", mid, "-F", "qcow2",
                          absV3, NULL));
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-b", "mid.qcow2",
                          "-F", "qcow2", relV3, "128M", NULL));
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", "compat=0.10",
                          "-b", base, "-F", "raw", absV2, NULL));
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", "compat=0.10",
                          "-b", "mid.qcow2", "-F", "qcow2", relV2, NULL));
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", "cluster_size=512",
                          "-b", base, "-F", "raw", small, NULL));

    assertMatchesQemu(mid);
    assertMatchesQemu(absV3);
    assertMatchesQemu(relV3);
    assertMatchesQemu(absV2);
    assertMatchesQemu(relV2);
    assertMatchesQemu(small);

    assertReadOk(relV3, &info);
    g_assert_cmpstr(info.backing_file, ==, "mid.qcow2");
    g_assert_cmpstr(info.backing_format, ==, "qcow2");
    g_assert_cmpuint(info.virtual_size, ==, 128 * 1024 * 1024);
    spImageInfoClear(&info);

    assertReadOk(absV2, &info);
    g_assert_cmpstr(info.backing_file, ==, base);
    g_assert_cmpstr(info.backing_format, ==, "raw");
    g_assert_cmpuint(info.virtual_size, ==, 64 * 1024 * 1024);
    spImageInfoClear(&info);

    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testQcow2Features(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *l2 = NULL;
    g_autofree char *lazy = NULL;
    g_autofree char *zstd = NULL;
    SpImageInfo info;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    l2 = pathIn(dir, "l2.qcow2");
    lazy = pathIn(dir, "lazy.qcow2");
    zstd = pathIn(dir, "zstd.qcow2");

    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o",
                          "extended_l2=on,cluster_size=128k", l2, "5G", NULL));
    assertMatchesQemu(l2);
    assertReadOk(l2, &info);
    g_assert_true(info.extended_l2);
    spImageInfoClear(&info);

    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on",
                          lazy, "1G", NULL));
    assertMatchesQemu(lazy);
    assertReadOk(lazy, &info);
    g_assert_true(info.lazy_refcounts);
    spImageInfoClear(&info);

    if (!qemuImg("create", "-q", "-f", "qcow2", "-o", "compression_type=zstd",
                 zstd, "1G", NULL)) {
        g_test_message("qemu-img lacks zstd, not testing it");
    } else {
        assertMatchesQemu(zstd);
        assertReadOk(zstd, &info);
        g_assert_cmpuint(info.compression_type, ==, 1);
        spImageInfoClear(&info);
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testQcow2DataFile(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *img = NULL;
    g_autofree char *data = NULL;
    g_autofree char *rawImg = NULL;
    g_autofree char *opt = NULL;
    g_autofree char *cwd = NULL;
    gboolean created;
    SpImageInfo info;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    img = pathIn(dir, "ext.qcow2");
    data = pathIn(dir, "ext.data");
    rawImg = pathIn(dir, "ext-raw.qcow2");
    opt = g_strdup_printf("data_file=%s", data);

    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", opt, img, "1G", NULL));
    assertMatchesQemu(img);
    assertReadOk(img, &info);
    g_assert_true(info.external_data_file);
    g_assert_cmpstr(info.data_file, ==, data);
    spImageInfoClear(&info);

    /* A relative name, with the raw flag (an autoclear bit) set. qemu-img
     * creates a relative data file in its working directory, not next to
     * the image, so run it in @dir. */
    cwd = g_get_current_dir();
    g_assert_cmpint(g_chdir(dir), ==, 0);
    created = qemuImg("create", "-q", "-f", "qcow2", "-o",
                      "data_file=ext-raw.data,data_file_raw=on",
                      rawImg, "1G", NULL);
    g_assert_cmpint(g_chdir(cwd), ==, 0);
    g_assert_true(created);
    assertMatchesQemu(rawImg);
    assertReadOk(rawImg, &info);
    g_assert_true(info.external_data_file);
    g_assert_cmpstr(info.data_file, ==, "ext-raw.data");
    spImageInfoClear(&info);

    spTestTempDirFree(g_steal_pointer(&dir));
}


/* Images qemu has worked on after creating them, with their tables moved
 * and extensions added: all valid, so none may be refused. */
/* qemu-img times PBKDF2 by CPU usage to pick the LUKS iteration count,
 * and on a loaded machine that fails now and then ("Unable to get
 * accurate CPU usage"): try a few times. */
static gboolean
createLuksQcow2(const char *path)
{
    int i;

    for (i = 0; i < 5; i++) {
        if (qemuImg("create", "-q", "-f", "qcow2", "--object",
                    "secret,id=s0,data=x", "-o",
                    "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10",
                    path, "100M", NULL))
            return TRUE;
        g_unlink(path);
    }
    return FALSE;
}


static void
testQcow2Modified(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *grown = NULL;
    g_autofree char *prealloc = NULL;
    g_autofree char *crypt = NULL;
    g_autofree char *refcount = NULL;
    g_autofree char *up = NULL;
    g_autofree char *down = NULL;
    g_autofree char *raw = NULL;
    g_autofree char *compressed = NULL;
    SpImageInfo info;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    grown = pathIn(dir, "grown.qcow2");
    prealloc = pathIn(dir, "prealloc.qcow2");
    crypt = pathIn(dir, "crypt.qcow2");
    refcount = pathIn(dir, "refcount.qcow2");
    up = pathIn(dir, "up.qcow2");
    down = pathIn(dir, "down.qcow2");
    raw = pathIn(dir, "data.raw");
    compressed = pathIn(dir, "compressed.qcow2");

    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", grown, "1G", NULL));
    g_assert_true(qemuImg("snapshot", "-c", "snap1", grown, NULL));
    g_assert_true(qemuImg("bitmap", "--add", grown, "bitmap0", NULL));
    g_assert_true(qemuImg("resize", "-q", grown, "+600G", NULL));
    g_assert_true(qemuImg("amend", "-f", "qcow2", "-o", "lazy_refcounts=on",
                          grown, NULL));
    assertMatchesQemu(grown);
    assertReadOk(grown, &info);
    g_assert_cmpuint(info.virtual_size, ==, 601ULL << 30);
    g_assert_true(info.lazy_refcounts);
    spImageInfoClear(&info);

    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", "preallocation=metadata",
                          prealloc, "100M", NULL));
    assertMatchesQemu(prealloc);

    if (createLuksQcow2(crypt))
        assertMatchesQemu(crypt);
    else
        g_test_message("no LUKS image: qemu-img could not time PBKDF2 on this machine");

    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", "refcount_bits=64",
                          refcount, "1G", NULL));
    assertMatchesQemu(refcount);

    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", "compat=0.10",
                          up, "1G", NULL));
    g_assert_true(qemuImg("amend", "-f", "qcow2", "-o", "compat=1.1", up, NULL));
    assertMatchesQemu(up);

    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", down, "1G", NULL));
    g_assert_true(qemuImg("amend", "-f", "qcow2", "-o", "compat=0.10", down, NULL));
    assertMatchesQemu(down);

    g_assert_true(qemuImg("create", "-q", "-f", "raw", raw, "8M", NULL));
    spTestWriteAt(raw, 1 << 20, "some data", 9);
    g_assert_true(qemuImg("convert", "-c", "-O", "qcow2", "-o", "cluster_size=4k",
                          raw, compressed, NULL));
    assertMatchesQemu(compressed);

    spTestTempDirFree(g_steal_pointer(&dir));
}


/* Dirty and corrupt cannot be made with qemu-img; set the bits and check
 * that qemu-img and the reader agree on them. */
static void
testQcow2DirtyCorrupt(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *img = NULL;
    SpImageInfo info;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    img = makeBackedImage(dir);

    writeByte(img, OFF_INCOMPATIBLE + 7, 0x01);
    assertMatchesQemu(img);
    assertReadOk(img, &info);
    g_assert_true(info.dirty);
    g_assert_false(info.corrupt);
    spImageInfoClear(&info);

    writeByte(img, OFF_INCOMPATIBLE + 7, 0x03);
    assertMatchesQemu(img);
    assertReadOk(img, &info);
    g_assert_true(info.dirty);
    g_assert_true(info.corrupt);
    spImageInfoClear(&info);

    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testRaw(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *img = NULL;
    g_autofree char *empty = NULL;
    g_autofree char *short3 = NULL;
    SpImageInfo info;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    img = pathIn(dir, "disk.raw");
    empty = pathIn(dir, "empty.raw");
    short3 = pathIn(dir, "short.raw");

    g_assert_true(qemuImg("create", "-q", "-f", "raw", img, "100M", NULL));
    spTestWriteAt(img, 4096, "hello", 5);
    assertMatchesQemu(img);

    writeAll(empty, (const guint8 *) "", 0);
    assertReadOk(empty, &info);
    g_assert_cmpuint(info.format, ==, SP_IMAGE_FORMAT_RAW);
    g_assert_cmpuint(info.virtual_size, ==, 0);
    g_assert_cmpuint(info.file_size, ==, 0);
    spImageInfoClear(&info);

    /* Not even a whole qcow2 magic: raw, as qemu sees it too. */
    writeAll(short3, (const guint8 *) "QFI", 3);
    assertMatchesQemu(short3);

    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testTruncated(void)
{
    /* Cut into the magic, the v2 and v3 headers, each extension, the
     * backing name, and the tables after the first cluster. The image
     * has a 112 byte header, the backing format extension at 112, the
     * feature names at 128, the end marker at 520, the name at 528. */
    static const struct {
        gsize len;
        const char *needle;
    } cases[] = {
        { 4, "file is 4 bytes, too short for a qcow2 header" },
        { 7, "too short for a qcow2 header" },
        { 8, "file is 8 bytes, too short for a version 3 header" },
        { 50, "too short for a version 3 header" },
        { 71, "too short for a version 3 header" },
        { 72, "too short for a version 3 header" },
        { 103, "too short for a version 3 header" },
        { 104, "header_length 112 extends past end of file" },
        { 111, "header_length 112 extends past end of file" },
        { 112, "backing file name (offset 528, length " },
        { 116, "header extension at offset 112 is cut off by end of file" },
        { 120, "header extension 0xe2792aca (offset 112, length 3) extends past end of file" },
        { 0x90, "header extension 0x6803f857 (offset 128, length 384) extends past end of file" },
        { 0x207, "header extension 0x6803f857 (offset 128, length 384) extends past end of file" },
        { 0x20a, "header extension at offset 520 is cut off by end of file" },
        { 0x210, "backing file name (offset 528, length " },
        { 0x220, ") extends past end of file" },
        { 0x8000, "L1 table (offset 196608, length 16) extends past end of file" },
        { 0xffff, "L1 table (offset 196608, length 16) extends past end of file" },
        { 0x10000, "L1 table (offset 196608, length 16) extends past end of file" },
        { 0x30000, "L1 table (offset 196608, length 16) extends past end of file" },
        { 0x30008, "L1 table (offset 196608, length 16) extends past end of file" },
    };
    g_autofree char *dir = NULL;
    g_autofree char *img = NULL;
    g_autofree char *cut = NULL;
    g_autofree guint8 *data = NULL;
    gsize len;
    gsize i;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    img = makeBackedImage(dir);
    cut = pathIn(dir, "cut.qcow2");
    data = readAll(img, &len);
    g_assert_cmpuint(findExtension(img, EXT_FEATURE_NAMES), ==, 128);
    g_assert_cmpuint(len, ==, 0x30010);

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        writeAll(cut, data, cases[i].len);
        assertReadFails(cut, SP_ERROR_BAD_IMAGE, cases[i].needle);
    }

    /* the whole file minus one byte of the L1 table */
    writeAll(cut, data, len - 1);
    assertReadFails(cut, SP_ERROR_BAD_IMAGE, "L1 table");
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* A copy of @good with @len bytes of @value written at @offset must fail
 * to read with @code and @needle in the message. */
static void
assertPatchFails(const char *good,
                 const char *bad,
                 guint64 offset,
                 const void *value,
                 gsize len,
                 SpErrorCode code,
                 const char *needle)
{
    copyFile(good, bad);
    spTestWriteAt(bad, offset, value, len);
    assertReadFails(bad, code, needle);
}


static void
assertPatch32Fails(const char *good, const char *bad, guint64 offset,
                   guint32 value, SpErrorCode code, const char *needle)
{
    guint32 be = GUINT32_TO_BE(value);

    assertPatchFails(good, bad, offset, &be, sizeof(be), code, needle);
}


static void
assertPatch64Fails(const char *good, const char *bad, guint64 offset,
                   guint64 value, SpErrorCode code, const char *needle)
{
    guint64 be = GUINT64_TO_BE(value);

    assertPatchFails(good, bad, offset, &be, sizeof(be), code, needle);
}


static void
testBadTables(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *good = NULL;
    g_autofree char *bad = NULL;
    const SpErrorCode B = SP_ERROR_BAD_IMAGE;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    good = makeBackedImage(dir);
    bad = pathIn(dir, "bad.qcow2");

    /* 1 GiB at 64 KiB clusters takes 2 L1 entries, at 0x30000 */
    assertPatch32Fails(good, bad, OFF_L1_SIZE, 0x7fffffff, B,
                       "L1 table size 2147483647 is larger than qemu's 33554432 byte limit");
    assertPatch32Fails(good, bad, OFF_L1_SIZE, 0xffffffff, B, "larger than qemu's");
    assertPatch32Fails(good, bad, OFF_L1_SIZE, 4 * 1024 * 1024, B,
                       "L1 table (offset 196608, length 33554432) extends past end of file");
    assertPatch32Fails(good, bad, OFF_L1_SIZE, 1024, B,
                       "L1 table (offset 196608, length 8192) extends past end of file");
    assertPatch32Fails(good, bad, OFF_L1_SIZE, 1, B, "too small for virtual size");
    assertPatch32Fails(good, bad, OFF_L1_SIZE, 0, B, "too small for virtual size");
    assertPatch64Fails(good, bad, OFF_L1_OFFSET, 0x40000, B, "extends past end of file");
    assertPatch64Fails(good, bad, OFF_L1_OFFSET, 1ULL << 62, B, "extends past end of file");
    assertPatch64Fails(good, bad, OFF_L1_OFFSET, G_MAXUINT64 - 0xffff, B,
                       "extends past end of file");
    assertPatch64Fails(good, bad, OFF_L1_OFFSET, 0x20008, B,
                       "L1 table offset 131080 is not aligned to the 65536 byte cluster size");
    assertPatch64Fails(good, bad, OFF_L1_OFFSET, 0, B, "L1 table offset 0 overlaps the header");

    assertPatch64Fails(good, bad, OFF_REFCOUNT_OFFSET, 0x100000000ULL, B,
                       "refcount table offset 4294967296 is past end of file");
    assertPatch64Fails(good, bad, OFF_REFCOUNT_OFFSET, G_MAXUINT64 - 0xffff, B,
                       "past end of file");
    assertPatch64Fails(good, bad, OFF_REFCOUNT_OFFSET, 0x10200, B, "not aligned");
    assertPatch64Fails(good, bad, OFF_REFCOUNT_OFFSET, 0, B,
                       "refcount table offset 0 overlaps the header");

    assertPatch32Fails(good, bad, OFF_NB_SNAPSHOTS, 1, B,
                       "snapshot table offset 0 overlaps the header");
    assertPatch32Fails(good, bad, OFF_NB_SNAPSHOTS, 100000, B, "snapshots");
    copyFile(good, bad);
    writeBE32(bad, OFF_NB_SNAPSHOTS, 1);
    writeBE64(bad, OFF_SNAPSHOTS_OFFSET, 0x1000000);
    assertReadFails(bad, B, "snapshot table offset 16777216 is past end of file");

    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testBadFields(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *good = NULL;
    g_autofree char *bad = NULL;
    const SpErrorCode B = SP_ERROR_BAD_IMAGE;
    const SpErrorCode U = SP_ERROR_UNSUPPORTED;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    good = makeBackedImage(dir);
    bad = pathIn(dir, "bad.qcow2");

    assertPatch32Fails(good, bad, OFF_VERSION, 4, U, "qcow2 version 4 is not supported");
    assertPatch32Fails(good, bad, OFF_VERSION, 1, U, "qcow2 version 1");
    assertPatch32Fails(good, bad, OFF_VERSION, 0, U, "qcow2 version 0");
    assertPatch32Fails(good, bad, OFF_CLUSTER_BITS, 8, B, "cluster_bits 8 is outside 9..21");
    assertPatch32Fails(good, bad, OFF_CLUSTER_BITS, 22, B, "cluster_bits 22");
    assertPatch32Fails(good, bad, OFF_CLUSTER_BITS, 0xffffffff, B, "cluster_bits");
    assertPatch64Fails(good, bad, OFF_SIZE, 1ULL << 63, B, "larger than 2^63 - 1");
    assertPatch64Fails(good, bad, OFF_SIZE, G_MAXUINT64, B, "larger than 2^63 - 1");
    assertPatch64Fails(good, bad, OFF_SIZE, 1ULL << 40, B, "too small for virtual size");
    assertPatch32Fails(good, bad, OFF_CRYPT_METHOD, 3, B, "encryption method 3");
    assertPatch32Fails(good, bad, OFF_REFCOUNT_ORDER, 7, B, "refcount_order 7");
    assertPatch32Fails(good, bad, OFF_HEADER_LENGTH, 100, B, "header_length 100");
    assertPatch32Fails(good, bad, OFF_HEADER_LENGTH, 108 + 1, B, "header_length 109");
    assertPatch32Fails(good, bad, OFF_HEADER_LENGTH, 0x20000, B, "larger than a cluster");
    assertPatch32Fails(good, bad, OFF_HEADER_LENGTH, 0x7ffffff8, B, "past end of file");

    /* extended L2 below 16 KiB clusters, which qemu-img refuses to make */
    copyFile(good, bad);
    writeByte(bad, OFF_INCOMPATIBLE + 7, 0x10);
    writeBE32(bad, OFF_CLUSTER_BITS, 13);
    assertReadFails(bad, B, "extended L2");

    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testBadFeatures(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *good = NULL;
    g_autofree char *bad = NULL;
    g_autofree guint8 *data = NULL;
    const SpErrorCode B = SP_ERROR_BAD_IMAGE;
    const SpErrorCode U = SP_ERROR_UNSUPPORTED;
    const guint8 *dirtyName;
    char name[46] = "frobnicate";
    gsize len;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    good = makeBackedImage(dir);
    bad = pathIn(dir, "bad.qcow2");

    assertPatch64Fails(good, bad, OFF_INCOMPATIBLE, 1ULL << 5, U,
                       "unknown incompatible feature bit 5");
    assertPatch64Fails(good, bad, OFF_INCOMPATIBLE, 1ULL << 63, U,
                       "unknown incompatible feature bit 63");
    assertPatch64Fails(good, bad, OFF_INCOMPATIBLE, G_MAXUINT64, U,
                       "unknown incompatible feature bit 5");

    /* The feature name table names the bit: rename "dirty bit" to bit 5. */
    data = readAll(good, &len);
    dirtyName = memmem(data, MIN(len, 0x10000), "dirty bit", 9);
    g_assert_nonnull(dirtyName);
    copyFile(good, bad);
    writeByte(bad, dirtyName - data - 1, 5);
    spTestWriteAt(bad, dirtyName - data, name, sizeof(name));
    writeBE64(bad, OFF_INCOMPATIBLE, 1ULL << 5);
    assertReadFails(bad, U, "bit 5 (frobnicate)");

    /* The compression type field and its feature bit must agree. */
    assertPatch64Fails(good, bad, OFF_INCOMPATIBLE, 1ULL << 3, B, "compression type 0");
    assertPatchFails(good, bad, OFF_COMPRESSION_TYPE, "\x01", 1, B,
                     "compression type 1 does not match");
    copyFile(good, bad);
    writeBE64(bad, OFF_INCOMPATIBLE, 1ULL << 3);
    writeByte(bad, OFF_COMPRESSION_TYPE, 2);
    assertReadFails(bad, U, "compression type 2 is not supported");

    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testBadBacking(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *good = NULL;
    g_autofree char *bad = NULL;
    g_autofree char *plain = NULL;
    g_autofree char *backingName = NULL;
    const SpErrorCode B = SP_ERROR_BAD_IMAGE;
    SpImageInfo info;
    guint64 fmtExt;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    good = makeBackedImage(dir);
    bad = pathIn(dir, "bad.qcow2");
    plain = makePlainImage(dir, "plain.qcow2");

    /* offset + length wraps past 2^64 */
    copyFile(good, bad);
    writeBE64(bad, OFF_BACKING_OFFSET, G_MAXUINT64 - 0x10);
    writeBE32(bad, OFF_BACKING_LENGTH, 0x100);
    assertReadFails(bad, B, "backing file name (offset 18446744073709551599, "
                    "length 256) extends past end of file");

    assertPatch32Fails(good, bad, OFF_BACKING_LENGTH, 99999, B,
                       "extends past the first cluster");
    assertPatch32Fails(good, bad, OFF_BACKING_LENGTH, 0xffffffff, B,
                       "extends past end of file");
    assertPatch32Fails(good, bad, OFF_BACKING_LENGTH, 2000, B,
                       "backing file name length 2000 is larger than 1023");
    assertPatch32Fails(good, bad, OFF_BACKING_LENGTH, 0, B, "backing file name is empty");
    assertPatch64Fails(good, bad, OFF_BACKING_OFFSET, 0xfff0, B,
                       "extends past the first cluster");
    assertPatch64Fails(good, bad, OFF_BACKING_OFFSET, 0x2000000, B,
                       "extends past end of file");
    assertPatch64Fails(good, bad, OFF_BACKING_OFFSET, 16, B, "overlaps the 112 byte header");

    /* a NUL inside the name would make qemu see a shorter name */
    assertReadOk(good, &info);
    backingName = g_strdup(info.backing_file);
    spImageInfoClear(&info);
    copyFile(good, bad);
    writeBE32(bad, OFF_BACKING_LENGTH, strlen(backingName) + 4);
    assertReadFails(bad, B, "NUL byte");

    /* the backing format extension: too long, empty, not printable */
    fmtExt = findExtension(good, EXT_BACKING_FORMAT);
    assertPatch32Fails(good, bad, fmtExt + 4, 17, B, "backing format name of 17 bytes");
    assertPatch32Fails(good, bad, fmtExt + 4, 0, B, "backing format name of 0 bytes");
    assertPatchFails(good, bad, fmtExt + 9, "\n", 1, B, "invalid byte 0x0a");
    assertPatchFails(good, bad, fmtExt + 8, "\xff", 1, B, "invalid byte 0xff");

    /* two backing format extensions */
    copyFile(good, bad);
    spTestWriteAt(bad, findExtension(good, EXT_FEATURE_NAMES),
                  "\xe2\x79\x2a\xca\0\0\0\5qcow2\0\0\0", 16);
    assertReadFails(bad, B, "duplicate backing format extension");

    /* the backing name of an image without one: the pointer is garbage */
    assertPatch64Fails(plain, bad, OFF_BACKING_OFFSET, 0x1000, B, "backing file name is empty");

    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testBadExtensions(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *good = NULL;
    g_autofree char *plain = NULL;
    g_autofree char *bad = NULL;
    const SpErrorCode B = SP_ERROR_BAD_IMAGE;
    SpImageInfo info;
    guint64 names;
    guint64 fmt;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    good = makeBackedImage(dir);
    plain = makePlainImage(dir, "plain.qcow2");
    bad = pathIn(dir, "bad.qcow2");

    names = findExtension(plain, EXT_FEATURE_NAMES);
    assertPatch32Fails(plain, bad, names + 4, 0xfff0, B,
                       "extends past the first cluster");
    assertPatch32Fails(plain, bad, names + 4, 0xffffffff, B,
                       "(offset 112, length 4294967295) extends past the first cluster");

    names = findExtension(good, EXT_FEATURE_NAMES);
    assertPatch32Fails(good, bad, names + 4, 0x1000, B,
                       "extends past the backing file name");
    fmt = findExtension(good, EXT_BACKING_FORMAT);
    assertPatch32Fails(good, bad, fmt + 4, 0xfffffff8, B,
                       "extends past the backing file name");

    /* no end marker before the backing name: an extension header cut off */
    copyFile(good, bad);
    writeBE64(bad, OFF_BACKING_OFFSET, names + 4);
    writeBE32(bad, OFF_BACKING_LENGTH, 4);
    assertReadFails(bad, B, "is cut off by the backing file name");

    /* unknown extensions are skipped */
    copyFile(plain, bad);
    spTestWriteAt(bad, names, "\x12\x34\x56\x78\0\0\0\3abc\0\0\0\0\0"
                  "\0\0\0\0\0\0\0\0", 24);
    assertReadOk(bad, &info);
    g_assert_cmpuint(info.format, ==, SP_IMAGE_FORMAT_QCOW2);
    spImageInfoClear(&info);

    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
mutate(GRand *rand, guint8 *buf, gsize len)
{
    guint n = g_rand_int_range(rand, 1, 9);
    guint i;

    for (i = 0; i < n; i++) {
        /* Mostly the header, where every byte is a length or an offset. */
        gsize window = g_rand_boolean(rand) ? 128 : len;
        gsize at = g_rand_int_range(rand, 0, window);
        gsize word = at / 4 * 4;
        guint32 value;

        switch (g_rand_int_range(rand, 0, 4)) {
        case 0:
            buf[at] ^= 1 << g_rand_int_range(rand, 0, 8);
            break;
        case 1:
            buf[at] = g_rand_int_range(rand, 0, 256);
            break;
        case 2:
            value = GUINT32_TO_BE(g_rand_int(rand));
            memcpy(buf + word, &value, 4);
            break;
        default:
            /* near 0 and near 2^32, the boundaries of the checks */
            value = GUINT32_TO_BE((guint32) g_rand_int_range(rand, -8, 56));
            memcpy(buf + word, &value, 4);
            break;
        }
    }
}


/* The files start as copies of the images; each round overwrites the
 * start of one and sets its length. Bytes lost to an earlier truncation
 * come back as zeros, which is as good as anything for this purpose. */
static gboolean
fuzzOne(int fd, const guint8 *orig, gsize origLen, GRand *rand)
{
    g_autoptr(GError) error = NULL;
    guint8 buf[FUZZ_WINDOW];
    gsize len = origLen;
    SpImageInfo info;

    memcpy(buf, orig, FUZZ_WINDOW);
    mutate(rand, buf, FUZZ_WINDOW);
    if (g_rand_int_range(rand, 0, 8) == 0)
        len = g_rand_int_range(rand, 0, FUZZ_WINDOW);

    g_assert_cmpint(pwrite(fd, buf, FUZZ_WINDOW, 0), ==, FUZZ_WINDOW);
    g_assert_cmpint(ftruncate(fd, len), ==, 0);

    if (!spImageInfoReadFd(fd, &info, &error)) {
        g_assert_nonnull(error);
        g_assert_true(error->domain == SP_ERROR);
        g_assert_true(error->code == SP_ERROR_BAD_IMAGE ||
                      error->code == SP_ERROR_UNSUPPORTED);
        g_assert_cmpstr(error->message, !=, "");
        assertZeroed(&info);
        return FALSE;
    }

    g_assert_cmpuint(info.file_size, ==, len);
    if (info.format == SP_IMAGE_FORMAT_QCOW2) {
        g_assert_cmpuint(info.cluster_bits, >=, 9);
        g_assert_cmpuint(info.cluster_bits, <=, 21);
        g_assert_cmpuint(info.virtual_size, <=, G_MAXINT64);
        g_assert_true(!info.backing_file || strlen(info.backing_file) <= 1023);
        g_assert_true(!info.backing_format || strlen(info.backing_format) <= 16);
    }
    spImageInfoClear(&info);
    return TRUE;
}


static int
openCopy(const char *src, const char *dst, guint8 **data, gsize *len)
{
    int fd;

    *data = readAll(src, len);
    g_assert_cmpuint(*len, >=, FUZZ_WINDOW);
    writeAll(dst, *data, *len);
    fd = open(dst, O_RDWR | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    return fd;
}


/* Random damage to real images: the reader may accept or refuse them, but
 * must not crash or read out of bounds (run under ASan to check that). */
static void
testFuzz(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *base = NULL;
    g_autofree char *v3 = NULL;
    g_autofree char *v2 = NULL;
    g_autofree char *fuzz3 = NULL;
    g_autofree char *fuzz2 = NULL;
    g_autofree char *dataOpt = NULL;
    g_autofree guint8 *img3 = NULL;
    g_autofree guint8 *img2 = NULL;
    g_autoptr(GRand) rand = g_rand_new_with_seed(2000);
    gsize len3;
    gsize len2;
    int fd3;
    int fd2;
    guint accepted = 0;
    guint i;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    base = pathIn(dir, "base.raw");
    v3 = pathIn(dir, "v3.qcow2");
    v2 = pathIn(dir, "v2.qcow2");
    fuzz3 = pathIn(dir, "fuzz3.qcow2");
    fuzz2 = pathIn(dir, "fuzz2.qcow2");

    g_assert_true(qemuImg("create", "-q", "-f", "raw", base, "1M", NULL));
    dataOpt = g_strdup_printf("data_file=%s/data.raw", dir);
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2", "-o", dataOpt,
                          v3, "1G", NULL));
    g_assert_true(qemuImg("create", "-q", "-f", "qcow2",
                          "-o", "compat=0.10,cluster_size=512",
                          "-b", base, "-F", "raw", v2, "1G", NULL));
    fd3 = openCopy(v3, fuzz3, &img3, &len3);
    fd2 = openCopy(v2, fuzz2, &img2, &len2);

    for (i = 0; i < FUZZ_ITERATIONS; i++) {
        if (i % 2)
            accepted += fuzzOne(fd3, img3, len3, rand);
        else
            accepted += fuzzOne(fd2, img2, len2, rand);
    }
    g_test_message("fuzz: %u of %d damaged images accepted",
                   accepted, FUZZ_ITERATIONS);
    g_assert_cmpint(close(fd3), ==, 0);
    g_assert_cmpint(close(fd2), ==, 0);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
assertOther(const char *path, const char *name)
{
    SpImageInfo info;

    assertReadOk(path, &info);
    g_assert_cmpuint(info.format, ==, SP_IMAGE_FORMAT_OTHER);
    g_assert_cmpstr(info.other_format, ==, name);
    g_assert_cmpstr(spImageFormatName(&info), ==, name);
    g_assert_null(info.backing_file);
    assertStatMatches(path, &info);
    spImageInfoClear(&info);
}


static void
testOtherFormatsQemu(void)
{
    static const struct {
        const char *format;
        const char *options;
        const char *name;
    } cases[] = {
        { "vmdk", NULL, "vmdk" },
        { "vmdk", "subformat=monolithicFlat", "vmdk" },
        { "vmdk", "subformat=streamOptimized", "vmdk" },
        { "vdi", NULL, "vdi" },
        { "vhdx", NULL, "vhdx" },
        { "vpc", NULL, "vpc" },
        { "qed", NULL, "qed" },
        { "parallels", NULL, "parallels" },
    };
    g_autofree char *dir = NULL;
    g_autofree char *luks = NULL;
    gsize i;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *img = g_strdup_printf("%s/img%zu.%s", dir, i, cases[i].format);

        if (cases[i].options)
            g_assert_true(qemuImg("create", "-q", "-f", cases[i].format,
                                  "-o", cases[i].options, img, "16M", NULL));
        else
            g_assert_true(qemuImg("create", "-q", "-f", cases[i].format,
                                  img, "16M", NULL));
        assertOther(img, cases[i].name);
    }

    luks = pathIn(dir, "img.luks");
    if (!qemuImg("create", "-q", "-f", "luks", "--object", "secret,id=s0,data=x",
                 "-o", "key-secret=s0,iter-time=10", luks, "16M", NULL))
        g_test_message("qemu-img cannot make luks images, not testing them");
    else
        assertOther(luks, "luks");

    spTestTempDirFree(g_steal_pointer(&dir));
}


/* Formats qemu-img cannot create: just the magic, padded to a sector. */
static void
testOtherFormatsMagic(void)
{
    static const struct {
        gsize offset;
        const char *magic;
        const char *name;
    } cases[] = {
        { 0, "WithoutFreeSpace", "parallels" },
        { 0, "Bochs Virtual HD Image", "bochs" },
        { 0, "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0", "cloop" },
        { 0, "# Disk DescriptorFile\nversion=1\n", "vmdk" },
        { 0, "conectix", "vpc" },
        { 0, "QED", "qed" },        /* with the NUL of the literal */
        { 0x40, "\x7f\x10\xda\xbe", "vdi" },
    };
    g_autofree char *dir = spTestTempDir();
    g_autofree char *img = pathIn(dir, "magic.img");
    guint8 shortVdi[0x42] = { 0 };
    SpImageInfo info;
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        guint8 sector[512] = { 0 };

        memcpy(sector + cases[i].offset, cases[i].magic, strlen(cases[i].magic) + 1);
        writeAll(img, sector, sizeof(sector));
        assertOther(img, cases[i].name);
    }

    /* a VDI signature cut off by the end of the file is not one */
    memcpy(shortVdi + 0x40, "\x7f\x10", 2);
    writeAll(img, shortVdi, sizeof(shortVdi));
    assertReadOk(img, &info);
    g_assert_cmpuint(info.format, ==, SP_IMAGE_FORMAT_RAW);
    g_assert_cmpuint(info.virtual_size, ==, sizeof(shortVdi));
    spImageInfoClear(&info);

    spTestTempDirFree(g_steal_pointer(&dir));
}


/* qcow version 1 shares the qcow2 magic; it is refused, not taken as raw. */
static void
testQcow1(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *img = NULL;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    img = pathIn(dir, "old.qcow");
    if (!qemuImg("create", "-q", "-f", "qcow", img, "16M", NULL)) {
        g_test_skip("qemu-img cannot make qcow images");
    } else {
        assertReadFails(img, SP_ERROR_UNSUPPORTED, "qcow2 version 1 is not supported");
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testNotRegular(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *target = pathIn(dir, "target.raw");
    g_autofree char *link = pathIn(dir, "link.raw");
    g_autofree char *fifo = pathIn(dir, "fifo");
    g_autofree char *sub = pathIn(dir, "subdir");
    g_autofree char *missing = pathIn(dir, "missing");
    g_autoptr(GError) error = NULL;
    SpImageInfo info;
    int fds[2];

    writeAll(target, (const guint8 *) "data", 4);
    g_assert_cmpint(symlink(target, link), ==, 0);
    g_assert_cmpint(mkfifo(fifo, 0600), ==, 0);
    g_assert_cmpint(g_mkdir(sub, 0700), ==, 0);

    assertReadFails(link, SP_ERROR_BAD_IMAGE, "symbolic link");
    assertReadFails(fifo, SP_ERROR_BAD_IMAGE, "not a regular file");
    assertReadFails(sub, SP_ERROR_BAD_IMAGE, "not a regular file");
    assertReadFails(missing, SP_ERROR_NOT_FOUND, "missing");

    /* the fd entry point checks the file type too */
    g_assert_cmpint(pipe(fds), ==, 0);
    g_assert_false(spImageInfoReadFd(fds[0], &info, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE);
    assertZeroed(&info);
    g_assert_cmpint(close(fds[0]), ==, 0);
    g_assert_cmpint(close(fds[1]), ==, 0);

    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testReadFd(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *img = NULL;
    g_autoptr(GError) error = NULL;
    SpImageInfo info;
    int fd;

    if (!needQemuImg())
        return;
    dir = spTestTempDir();
    img = makeBackedImage(dir);

    fd = open(img, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_assert_true(spImageInfoReadFd(fd, &info, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(info.format, ==, SP_IMAGE_FORMAT_QCOW2);
    g_assert_cmpstr(info.backing_format, ==, "raw");
    g_assert_true(g_str_has_suffix(info.backing_file, "/base.raw"));
    spImageInfoClear(&info);

    /* with the caller's fstat: the same, and the stat is what counts */
    {
        struct stat sb;
        g_assert_cmpint(fstat(fd, &sb), ==, 0);
        g_assert_true(spImageInfoReadFdStat(fd, &sb, &info, &error));
        g_assert_no_error(error);
        g_assert_cmpstr(info.backing_format, ==, "raw");
        g_assert_cmpuint(info.file_size, ==, sb.st_size);
        spImageInfoClear(&info);

        sb.st_mode = S_IFDIR | 0755;
        g_assert_false(spImageInfoReadFdStat(fd, &sb, &info, &error));
        g_assert_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE);
        g_clear_error(&error);
    }
    g_assert_cmpint(close(fd), ==, 0);

    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testCopy(void)
{
    SpImageInfo src = { 0 };
    SpImageInfo dst = { 0 };

    src.format = SP_IMAGE_FORMAT_QCOW2;
    src.virtual_size = 42;
    src.backing_file = g_strdup("/srv/hdd/t.qcow2");
    src.backing_format = g_strdup("qcow2");
    spImageInfoCopy(&dst, &src);
    spImageInfoClear(&src);
    g_assert_cmpuint(dst.virtual_size, ==, 42);
    g_assert_cmpstr(dst.backing_file, ==, "/srv/hdd/t.qcow2");
    g_assert_cmpstr(dst.backing_format, ==, "qcow2");
    g_assert_null(dst.data_file);
    spImageInfoClear(&dst);
}


static void
testFormatName(void)
{
    SpImageInfo info = { 0 };

    g_assert_cmpstr(spImageFormatName(&info), ==, "raw");
    info.format = SP_IMAGE_FORMAT_QCOW2;
    g_assert_cmpstr(spImageFormatName(&info), ==, "qcow2");
    info.format = SP_IMAGE_FORMAT_OTHER;
    info.other_format = "vmdk";
    g_assert_cmpstr(spImageFormatName(&info), ==, "vmdk");

    spImageInfoClear(&info);
    assertZeroed(&info);
    spImageInfoClear(NULL);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/image-header/qcow2/versions", testQcow2Versions);
    g_test_add_func("/image-header/qcow2/cluster-sizes", testQcow2ClusterSizes);
    g_test_add_func("/image-header/qcow2/backing", testQcow2Backing);
    g_test_add_func("/image-header/qcow2/features", testQcow2Features);
    g_test_add_func("/image-header/qcow2/data-file", testQcow2DataFile);
    g_test_add_func("/image-header/qcow2/modified", testQcow2Modified);
    g_test_add_func("/image-header/qcow2/dirty-corrupt", testQcow2DirtyCorrupt);
    g_test_add_func("/image-header/qcow2/read-fd", testReadFd);
    g_test_add_func("/image-header/copy", testCopy);
    g_test_add_func("/image-header/raw", testRaw);
    g_test_add_func("/image-header/bad/truncated", testTruncated);
    g_test_add_func("/image-header/bad/tables", testBadTables);
    g_test_add_func("/image-header/bad/fields", testBadFields);
    g_test_add_func("/image-header/bad/features", testBadFeatures);
    g_test_add_func("/image-header/bad/backing", testBadBacking);
    g_test_add_func("/image-header/bad/extensions", testBadExtensions);
    g_test_add_func("/image-header/bad/fuzz", testFuzz);
    g_test_add_func("/image-header/other/qemu-img", testOtherFormatsQemu);
    g_test_add_func("/image-header/other/magic", testOtherFormatsMagic);
    g_test_add_func("/image-header/other/qcow1", testQcow1);
    g_test_add_func("/image-header/file/not-regular", testNotRegular);
    g_test_add_func("/image-header/format-name", testFormatName);

    return g_test_run();
}
