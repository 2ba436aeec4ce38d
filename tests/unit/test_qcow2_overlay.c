/*
 * test_qcow2_overlay.c: unit tests of the native qcow2 writer
 *
 * qemu-img and qemu-io are the oracles: every image we write must pass
 * `qemu-img check`, read back as the spec said through `qemu-img info`,
 * and equal what `qemu-img create` makes for the same spec.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "image/qcow2_overlay.h"
#include "test_helpers.h"

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)
#define TiB (1024ULL * GiB)

/* The template every overlay with a backing file sits on: 0xab in its
 * first 64 KiB, zeros in the rest. */
#define TEMPLATE_SIZE "2M"

/* Paths of about this length exercise the 1023-byte backing name limit. */
#define LONG_PATH_LEN 1000

typedef enum {
    BACKING_NONE,
    BACKING_SHORT_RAW,
    BACKING_LONG_QCOW2,
    BACKING_LAST
} BackingKind;

typedef struct {
    char *dir;
    char *raw;              /* short path, raw */
    char *qcow2;            /* LONG_PATH_LEN bytes, qcow2 */
    char *raw_sum;          /* sha256 of the files, to see them unchanged */
    char *qcow2_sum;
} Templates;

static Templates templates;


/* Run a command given as NULL-terminated arguments; returns its exit
 * status and logs its standard error when it fails. */
static int G_GNUC_NULL_TERMINATED
runTool(char **out, char **err, const char *first, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autofree char *outbuf = NULL;
    g_autofree char *errbuf = NULL;
    const char *arg;
    va_list ap;
    int rc;

    va_start(ap, first);
    for (arg = first; arg; arg = va_arg(ap, const char *))
        g_ptr_array_add(argv, (gpointer) arg);
    va_end(ap);
    g_ptr_array_add(argv, NULL);

    /* Capture the output even when unused, since our standard output
     * is the TAP stream. */
    rc = spTestRun((const char * const *) argv->pdata, &outbuf, &errbuf);
    if (rc != 0 && !err)
        g_test_message("%s exited with %d: %s%s", first, rc, outbuf, errbuf);
    if (out)
        *out = g_steal_pointer(&outbuf);
    if (err)
        *err = g_steal_pointer(&errbuf);
    return rc;
}


static gboolean
haveQemuIo(void)
{
    g_autofree char *path = g_find_program_in_path("qemu-io");

    return path != NULL;
}


static char *
fileChecksum(const char *path)
{
    g_autofree char *data = NULL;
    gsize len = 0;

    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    return g_compute_checksum_for_data(G_CHECKSUM_SHA256,
                                       (const guchar *) data, len);
}


/* A path of exactly @len bytes under @base, creating the directories. */
static char *
deepPath(const char *base, size_t len)
{
    GString *path = g_string_new(base);

    g_assert_cmpuint(len, >, path->len + 1);
    while (len - path->len > 201) {
        g_string_append_c(path, '/');
        g_string_append_len(path, "dddddddddddddddddddddddddddddddddddddddd"
                                  "dddddddddddddddddddddddddddddddddddddddd"
                                  "dddddddddddddddddddddddddddddddddddddddd"
                                  "dddddddddddddddddddddddddddddddddddddddd"
                                  "dddddddddddddddddddddddddddddddddddddddd",
                            200);
        g_assert_cmpint(g_mkdir_with_parents(path->str, 0700), ==, 0);
    }
    g_string_append_c(path, '/');
    while (path->len < len)
        g_string_append_c(path, 't');
    return g_string_free(path, FALSE);
}


static void
makeTemplate(const char *path, const char *format)
{
    g_assert_cmpint(runTool(NULL, NULL, "qemu-img", "create", "-q",
                            "-f", format, path, TEMPLATE_SIZE, NULL), ==, 0);
    g_assert_cmpint(runTool(NULL, NULL, "qemu-io", "-f", format,
                            "-c", "write -P 0xab 0 64k", path, NULL), ==, 0);
}


static const Templates *
getTemplates(void)
{
    if (!templates.dir) {
        templates.dir = spTestTempDir();
        templates.raw = g_build_filename(templates.dir, "template.raw", NULL);
        templates.qcow2 = deepPath(templates.dir, LONG_PATH_LEN);
        makeTemplate(templates.raw, "raw");
        makeTemplate(templates.qcow2, "qcow2");
        templates.raw_sum = fileChecksum(templates.raw);
        templates.qcow2_sum = fileChecksum(templates.qcow2);
    }
    return &templates;
}


static void
freeTemplates(void)
{
    spTestTempDirFree(g_steal_pointer(&templates.dir));
    g_clear_pointer(&templates.raw, g_free);
    g_clear_pointer(&templates.qcow2, g_free);
    g_clear_pointer(&templates.raw_sum, g_free);
    g_clear_pointer(&templates.qcow2_sum, g_free);
}


static void
setBacking(SpQcow2Spec *spec, BackingKind kind)
{
    const Templates *t = kind == BACKING_NONE ? NULL : getTemplates();

    spec->backing_file = NULL;
    spec->backing_format = NULL;
    if (kind == BACKING_SHORT_RAW) {
        spec->backing_file = t->raw;
        spec->backing_format = "raw";
    } else if (kind == BACKING_LONG_QCOW2) {
        spec->backing_file = t->qcow2;
        spec->backing_format = "qcow2";
    }
}


static void
assertTemplatesUnchanged(void)
{
    g_autofree char *raw_sum = fileChecksum(templates.raw);
    g_autofree char *qcow2_sum = fileChecksum(templates.qcow2);

    g_assert_cmpstr(raw_sum, ==, templates.raw_sum);
    g_assert_cmpstr(qcow2_sum, ==, templates.qcow2_sum);
}


/* What the spec says, computed independently of the writer. */
static guint64
expectedMaxSize(guint32 cluster_bits, gboolean extended_l2)
{
    return 1ULL << (2 * cluster_bits + 19 - (extended_l2 ? 1 : 0));
}


static guint64
roundUpSectors(guint64 size)
{
    return (size + 511) / 512 * 512;
}


static guint64
expectedL1Size(const SpQcow2Spec *spec)
{
    guint64 cluster_size = 1ULL << spec->cluster_bits;
    guint64 l2_entries = cluster_size / (spec->extended_l2 ? 16 : 8);
    guint64 coverage = cluster_size * l2_entries;

    return (roundUpSectors(spec->virtual_size) + coverage - 1) / coverage;
}


/* qemu-img starts with one refcount block and one refcount table cluster
 * and only rearranges its metadata when they cannot cover the header,
 * the two of them and the L1 table; then our layouts agree exactly. */
static gboolean
expectSameLayoutAsQemu(const SpQcow2Spec *spec)
{
    guint64 cluster_size = 1ULL << spec->cluster_bits;
    guint64 l1_clusters = (expectedL1Size(spec) * 8 + cluster_size - 1) /
                          cluster_size;

    return 3 + l1_clusters <= cluster_size / 2;
}


static void
writeImage(const char *path, const SpQcow2Spec *spec)
{
    g_autoptr(GError) error = NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_true(spQcow2WriteFd(fd, spec, &error));
    g_assert_no_error(error);
    g_assert_cmpint(close(fd), ==, 0);
}


static int
qemuImgCreate(const char *path, const SpQcow2Spec *spec, char **err)
{
    g_autofree char *options =
        g_strdup_printf("cluster_size=%llu,extended_l2=%s",
                        1ULL << spec->cluster_bits,
                        spec->extended_l2 ? "on" : "off");
    g_autofree char *size = g_strdup_printf("%" G_GUINT64_FORMAT,
                                            spec->virtual_size);

    if (spec->backing_file)
        return runTool(NULL, err, "qemu-img", "create", "-q", "-f", "qcow2",
                       "-o", options, "-b", spec->backing_file,
                       "-F", spec->backing_format, path, size, NULL);
    return runTool(NULL, err, "qemu-img", "create", "-q", "-f", "qcow2",
                   "-o", options, path, size, NULL);
}


static void
assertCheckClean(const char *path)
{
    g_autofree char *out = NULL;
    gint64 errors = -1;
    gint64 leaks = 0;

    g_assert_cmpint(runTool(&out, NULL, "qemu-img", "check",
                            "--output=json", path, NULL), ==, 0);
    g_assert_true(spTestJsonInt(out, "check-errors", &errors));
    g_assert_cmpint(errors, ==, 0);
    g_assert_false(spTestJsonInt(out, "leaks", &leaks));
    g_assert_false(spTestJsonInt(out, "corruptions", &leaks));
}


static void
assertJsonBool(const char *json, const char *key, gboolean expected)
{
    gboolean value = !expected;

    g_assert_true(spTestJsonBool(json, key, &value));
    g_assert_cmpint(value, ==, expected);
}


static void
assertJsonInt(const char *json, const char *key, gint64 expected)
{
    gint64 value = -1;

    g_assert_true(spTestJsonInt(json, key, &value));
    g_assert_cmpint(value, ==, expected);
}


static void
assertInfo(const char *path, const SpQcow2Spec *spec)
{
    g_autofree char *out = NULL;
    g_autofree char *format = NULL;
    g_autofree char *compat = NULL;
    g_autofree char *backing = NULL;
    g_autofree char *backing_format = NULL;

    g_assert_cmpint(runTool(&out, NULL, "qemu-img", "info", "--output=json",
                            path, NULL), ==, 0);
    format = spTestJsonString(out, "format");
    compat = spTestJsonString(out, "compat");
    backing = spTestJsonString(out, "backing-filename");
    backing_format = spTestJsonString(out, "backing-filename-format");

    g_assert_cmpstr(format, ==, "qcow2");
    assertJsonInt(out, "virtual-size", roundUpSectors(spec->virtual_size));
    assertJsonInt(out, "cluster-size", 1LL << spec->cluster_bits);
    g_assert_cmpstr(compat, ==, "1.1");
    assertJsonBool(out, "extended-l2", spec->extended_l2);
    assertJsonBool(out, "lazy-refcounts", FALSE);
    assertJsonBool(out, "corrupt", FALSE);
    assertJsonBool(out, "dirty-flag", FALSE);
    assertJsonInt(out, "refcount-bits", 16);
    g_assert_cmpstr(backing, ==, spec->backing_file);
    g_assert_cmpstr(backing_format, ==, spec->backing_format);
}


static guint64
readBE(int fd, off_t offset, size_t width)
{
    guint8 buf[8];
    guint64 value = 0;
    size_t i;

    g_assert_cmpint(pread(fd, buf, width, offset), ==, (gssize) width);
    for (i = 0; i < width; i++)
        value = value << 8 | buf[i];
    return value;
}


typedef struct {
    guint64 l1_size;
    guint64 l1_table_offset;
    guint64 refcount_table_offset;
    guint64 refcount_table_clusters;
} HeaderFields;


static void
readHeader(const char *path, HeaderFields *hdr)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    hdr->l1_size = readBE(fd, 36, 4);
    hdr->l1_table_offset = readBE(fd, 40, 8);
    hdr->refcount_table_offset = readBE(fd, 48, 8);
    hdr->refcount_table_clusters = readBE(fd, 56, 4);
    close(fd);
}


static guint64
fileSize(const char *path)
{
    GStatBuf st;

    g_assert_cmpint(g_stat(path, &st), ==, 0);
    return st.st_size;
}


static void
assertSameBytes(const char *a, const char *b)
{
    g_autoptr(GMappedFile) ma = g_mapped_file_new(a, FALSE, NULL);
    g_autoptr(GMappedFile) mb = g_mapped_file_new(b, FALSE, NULL);

    g_assert_nonnull(ma);
    g_assert_nonnull(mb);
    g_assert_cmpuint(g_mapped_file_get_length(ma), ==,
                     g_mapped_file_get_length(mb));
    g_assert_true(memcmp(g_mapped_file_get_contents(ma),
                         g_mapped_file_get_contents(mb),
                         g_mapped_file_get_length(ma)) == 0);
}


/* Reads reach the template through the overlay, and writes stay in the
 * overlay, which still passes the check afterwards: this makes qemu grow
 * the L2 and refcount structures we laid out. */
static void
assertGuestIo(const char *overlay)
{
    g_assert_cmpint(runTool(NULL, NULL, "qemu-io", "-f", "qcow2",
                            "-c", "read -P 0xab 0 64k",
                            "-c", "read -P 0 64k 64k",
                            overlay, NULL), ==, 0);
    g_assert_cmpint(runTool(NULL, NULL, "qemu-io", "-f", "qcow2",
                            "-c", "write -P 0x5a 1M 64k",
                            overlay, NULL), ==, 0);
    g_assert_cmpint(runTool(NULL, NULL, "qemu-io", "-f", "qcow2",
                            "-c", "read -P 0x5a 1M 64k",
                            "-c", "read -P 0xab 0 64k",
                            overlay, NULL), ==, 0);
    assertCheckClean(overlay);
    assertTemplatesUnchanged();
}


static const char *
backingName(BackingKind kind)
{
    static const char *names[] = { "none", "short raw", "long qcow2" };

    return names[kind];
}


static void
checkAgainstQemu(const char *dir, const SpQcow2Spec *spec)
{
    g_autofree char *ours = g_build_filename(dir, "ours.qcow2", NULL);
    g_autofree char *ref = g_build_filename(dir, "qemu.qcow2", NULL);
    HeaderFields hdr;

    writeImage(ours, spec);
    assertCheckClean(ours);
    assertInfo(ours, spec);
    readHeader(ours, &hdr);
    g_assert_cmpuint(hdr.l1_size, ==, expectedL1Size(spec));

    /* qemu-img takes ~9 s here, growing its refcount structures one block
     * at a time around a 32 MiB L1 table of 512-byte clusters; the limit
     * itself is covered by /qcow2-overlay/max-virtual-size. */
    if (spec->cluster_bits == 9 && spec->virtual_size > 10 * GiB) {
        g_test_message("  no qemu-img reference for this size");
    } else {
        g_assert_cmpint(qemuImgCreate(ref, spec, NULL), ==, 0);
        if (expectSameLayoutAsQemu(spec)) {
            assertSameBytes(ours, ref);
        } else {
            g_test_message("  layout differs: qemu-img appends refcount "
                           "blocks after the L1 table; file size: qemu-img %"
                           G_GUINT64_FORMAT ", ours %" G_GUINT64_FORMAT,
                           fileSize(ref), fileSize(ours));
        }
        /* qemu-img compare walks the disk one L2 table's span at a time,
         * which takes seconds for the largest L1 tables. */
        if (hdr.l1_size <= 16384)
            g_assert_cmpint(runTool(NULL, NULL, "qemu-img", "compare",
                                    "-q", ours, ref, NULL), ==, 0);
        g_assert_cmpint(g_unlink(ref), ==, 0);
    }

    if (spec->backing_file && spec->virtual_size == 10 * GiB)
        assertGuestIo(ours);
    g_assert_cmpint(g_unlink(ours), ==, 0);
}


static void
testOracleGrid(gconstpointer data)
{
    const guint64 sizes[] = { 1, 512, MiB + 1, 10 * GiB, TiB, 64 * TiB, 0 };
    guint32 cluster_bits = GPOINTER_TO_UINT(data);
    g_autofree char *dir = NULL;
    int ext;
    size_t i;
    int kind;

    if (!spTestHaveQemuImg() || !haveQemuIo()) {
        g_test_skip("qemu-img or qemu-io is not installed");
        return;
    }
    dir = spTestTempDir();

    for (ext = 0; ext <= (cluster_bits >= 14); ext++) {
        guint64 max = expectedMaxSize(cluster_bits, ext);

        for (i = 0; i < G_N_ELEMENTS(sizes); i++) {
            guint64 size = sizes[i] ? sizes[i] : max;

            if (size > max)
                continue;
            for (kind = 0; kind < BACKING_LAST; kind++) {
                SpQcow2Spec spec = {
                    .virtual_size = size,
                    .cluster_bits = cluster_bits,
                    .extended_l2 = ext,
                };

                /* A 1000-byte name does not fit into a 512-byte header
                 * cluster; /qcow2-overlay/backing-fits-cluster0 covers
                 * that limit. */
                if (kind == BACKING_LONG_QCOW2 && cluster_bits < 11)
                    continue;
                setBacking(&spec, kind);
                g_test_message("size %" G_GUINT64_FORMAT ", cluster bits %u,"
                               " extended L2 %s, backing %s", size,
                               cluster_bits, ext ? "on" : "off",
                               backingName(kind));
                checkAgainstQemu(dir, &spec);
            }
        }
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testSizeRounding(void)
{
    const guint64 sizes[] = { 1, 511, 512, 513, MiB + 1, 10 * GiB - 1 };
    g_autofree char *dir = NULL;
    size_t i;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img is not installed");
        return;
    }
    dir = spTestTempDir();
    for (i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autofree char *ours = g_build_filename(dir, "ours.qcow2", NULL);
        g_autofree char *ref = g_build_filename(dir, "qemu.qcow2", NULL);
        SpQcow2Spec spec = {
            .virtual_size = sizes[i],
            .cluster_bits = 16,
        };

        writeImage(ours, &spec);
        g_assert_cmpint(qemuImgCreate(ref, &spec, NULL), ==, 0);
        /* assertInfo expects the size rounded up to whole sectors. */
        assertInfo(ref, &spec);
        assertInfo(ours, &spec);
        assertSameBytes(ours, ref);
        g_assert_cmpint(g_unlink(ours), ==, 0);
        g_assert_cmpint(g_unlink(ref), ==, 0);
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testDefaultClusterBits(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "ours.qcow2", NULL);
    SpQcow2Spec spec = { .virtual_size = 10 * GiB };
    HeaderFields hdr;
    int fd;

    g_assert_cmpuint(spQcow2MaxVirtualSize(0), ==,
                     spQcow2MaxVirtualSize(SP_QCOW2_DEFAULT_CLUSTER_BITS));
    writeImage(path, &spec);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpuint(readBE(fd, 20, 4), ==, SP_QCOW2_DEFAULT_CLUSTER_BITS);
    close(fd);
    readHeader(path, &hdr);
    g_assert_cmpuint(hdr.refcount_table_offset, ==,
                     1ULL << SP_QCOW2_DEFAULT_CLUSTER_BITS);
    if (spTestHaveQemuImg()) {
        spec.cluster_bits = SP_QCOW2_DEFAULT_CLUSTER_BITS;
        assertCheckClean(path);
        assertInfo(path, &spec);
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* spQcow2MaxVirtualSize follows from the 32 MiB cap qemu puts on the L1
 * table; qemu-img must refuse one byte more, and accept our image at the
 * limit. Whether qemu-img itself creates an image at the limit is checked
 * by the grid for 4 KiB, 64 KiB and 2 MiB clusters. */
static void
testMaxVirtualSize(void)
{
    g_autofree char *dir = NULL;
    guint32 bits;
    int ext;

    g_assert_cmpuint(spQcow2MaxVirtualSize(SP_QCOW2_MIN_CLUSTER_BITS - 1),
                     ==, 0);
    g_assert_cmpuint(spQcow2MaxVirtualSize(SP_QCOW2_MAX_CLUSTER_BITS + 1),
                     ==, 0);
    for (bits = SP_QCOW2_MIN_CLUSTER_BITS; bits <= SP_QCOW2_MAX_CLUSTER_BITS;
         bits++)
        g_assert_cmpuint(spQcow2MaxVirtualSize(bits), ==,
                         expectedMaxSize(bits, FALSE));

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img is not installed");
        return;
    }
    dir = spTestTempDir();
    for (bits = SP_QCOW2_MIN_CLUSTER_BITS; bits <= SP_QCOW2_MAX_CLUSTER_BITS;
         bits++) {
        for (ext = 0; ext <= (bits >= 14); ext++) {
            g_autofree char *ours = g_build_filename(dir, "ours.qcow2", NULL);
            g_autofree char *ref = g_build_filename(dir, "qemu.qcow2", NULL);
            g_autofree char *err = NULL;
            g_autoptr(GError) error = NULL;
            SpQcow2Spec spec = {
                .virtual_size = expectedMaxSize(bits, ext),
                .cluster_bits = bits,
                .extended_l2 = ext,
            };

            writeImage(ours, &spec);
            assertInfo(ours, &spec);
            assertCheckClean(ours);
            g_assert_cmpint(g_unlink(ours), ==, 0);

            spec.virtual_size++;
            g_assert_false(spQcow2SpecValidate(&spec, &error));
            g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
            g_assert_cmpint(qemuImgCreate(ref, &spec, &err), !=, 0);
            g_assert_nonnull(strstr(err, "too large"));
            g_assert_false(g_file_test(ref, G_FILE_TEST_EXISTS));
        }
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* The backing file name shares cluster 0 with the header and its
 * extensions: for small clusters we must refuse exactly the names that
 * qemu-img refuses. */
static void
testBackingFitsCluster0(void)
{
    static const struct {
        guint32 cluster_bits;
        size_t len;
        gboolean fits;
    } cases[] = {
        { 9, 376, TRUE },
        { 9, 377, FALSE },
        { 10, 888, TRUE },
        { 10, 889, FALSE },
        { 12, 1023, TRUE },
    };
    g_autofree char *dir = NULL;
    size_t i;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img is not installed");
        return;
    }
    dir = spTestTempDir();
    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *ours = g_build_filename(dir, "ours.qcow2", NULL);
        g_autofree char *ref = g_build_filename(dir, "qemu.qcow2", NULL);
        g_autofree char *backing = deepPath(dir, cases[i].len);
        g_autoptr(GError) error = NULL;
        g_autofree char *err = NULL;
        SpQcow2Spec spec = {
            .virtual_size = MiB,
            .cluster_bits = cases[i].cluster_bits,
            .backing_file = backing,
            .backing_format = "raw",
        };

        spTestWriteAt(backing, 0, "template", 8);
        g_assert_cmpint(spQcow2SpecValidate(&spec, &error), ==,
                        cases[i].fits);
        if (!cases[i].fits) {
            g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
            g_assert_cmpint(qemuImgCreate(ref, &spec, &err), !=, 0);
            continue;
        }
        g_assert_no_error(error);
        g_assert_cmpint(qemuImgCreate(ref, &spec, NULL), ==, 0);
        writeImage(ours, &spec);
        assertCheckClean(ours);
        assertInfo(ours, &spec);
        assertSameBytes(ours, ref);
        g_assert_cmpint(g_unlink(ours), ==, 0);
        g_assert_cmpint(g_unlink(ref), ==, 0);
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* Sizes at which the metadata of 512-byte clusters exactly fills one
 * refcount block or one refcount table cluster, and one L1 cluster more:
 * the layout must grow by exactly what the extra cluster needs. Each L1
 * cluster of 64 entries maps 2 MiB; a refcount block counts 256 clusters
 * and a table cluster points to 64 blocks. */
static void
testRefcountBoundaries(void)
{
    static const struct {
        guint64 l1_clusters;
        guint64 table_clusters;
        guint64 blocks;
    } cases[] = {
        { 253, 1, 1 },          /* 1 + 1 + 1 + 253 = 256 */
        { 254, 1, 2 },
        { 16318, 1, 64 },       /* 1 + 1 + 64 + 16318 = 16384 */
        { 16319, 2, 65 },
    };
    g_autofree char *dir = spTestTempDir();
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_build_filename(dir, "ours.qcow2", NULL);
        SpQcow2Spec spec = {
            .virtual_size = cases[i].l1_clusters * 2 * MiB,
            .cluster_bits = 9,
        };
        g_autofree char *last = g_strdup_printf("write -P 0x77 %"
                                                G_GUINT64_FORMAT " 64k",
                                                (guint64) (spec.virtual_size -
                                                           64 * KiB));
        HeaderFields hdr;

        writeImage(path, &spec);
        readHeader(path, &hdr);
        g_assert_cmpuint(hdr.refcount_table_offset, ==, 512);
        g_assert_cmpuint(hdr.refcount_table_clusters, ==,
                         cases[i].table_clusters);
        g_assert_cmpuint(hdr.l1_table_offset, ==,
                         (1 + cases[i].table_clusters + cases[i].blocks) * 512);
        g_assert_cmpuint(fileSize(path), ==,
                         hdr.l1_table_offset + cases[i].l1_clusters * 512);

        if (spTestHaveQemuImg() && haveQemuIo()) {
            assertCheckClean(path);
            g_assert_cmpint(runTool(NULL, NULL, "qemu-io", "-f", "qcow2",
                                    "-c", "write -P 0x5a 1M 64k",
                                    "-c", last, path, NULL), ==, 0);
            assertCheckClean(path);
        }
        g_assert_cmpint(g_unlink(path), ==, 0);
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
assertInvalid(const char *dir, const SpQcow2Spec *spec, const char *needle)
{
    g_autofree char *path = g_build_filename(dir, "invalid.qcow2", NULL);
    g_autoptr(GError) error = NULL;
    int fd;

    g_assert_false(spQcow2SpecValidate(spec, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    if (needle)
        g_assert_nonnull(strstr(error->message, needle));
    g_clear_error(&error);

    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    g_assert_cmpint(fd, >=, 0);
    g_assert_false(spQcow2WriteFd(fd, spec, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_cmpint(close(fd), ==, 0);
    g_assert_cmpuint(fileSize(path), ==, 0);
    g_assert_cmpint(g_unlink(path), ==, 0);
}


static void
testInvalidSpecs(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path1023 = g_strnfill(1023, 'p');
    g_autofree char *path1024 = g_strnfill(1024, 'p');
    g_autofree char *path377 = g_strnfill(377, 'p');
    g_autofree char *max9 = g_strdup_printf("%" G_GUINT64_FORMAT,
                                            expectedMaxSize(9, FALSE));
    g_autofree char *max16 = g_strdup_printf("%" G_GUINT64_FORMAT,
                                             expectedMaxSize(16, FALSE));
    g_autofree char *max16ext = g_strdup_printf("%" G_GUINT64_FORMAT,
                                                expectedMaxSize(16, TRUE));
    const struct {
        const char *what;
        SpQcow2Spec spec;
        const char *needle;     /* expected in the message */
    } cases[] = {
        { "size 0", { .virtual_size = 0, .cluster_bits = 16 }, "zero" },
        { "size max+1, 512-byte clusters",
          { .virtual_size = expectedMaxSize(9, FALSE) + 1,
            .cluster_bits = 9 }, max9 },
        { "size max+1, default clusters",
          { .virtual_size = expectedMaxSize(16, FALSE) + 1 }, max16 },
        { "size max+1, extended L2",
          { .virtual_size = expectedMaxSize(16, TRUE) + 1,
            .cluster_bits = 16, .extended_l2 = TRUE }, max16ext },
        { "size 2^64-1",
          { .virtual_size = G_MAXUINT64, .cluster_bits = 21 }, "maximum" },
        { "cluster bits 8",
          { .virtual_size = MiB, .cluster_bits = 8 }, "cluster" },
        { "cluster bits 22",
          { .virtual_size = MiB, .cluster_bits = 22 }, "cluster" },
        { "cluster bits 64",
          { .virtual_size = MiB, .cluster_bits = 64 }, "cluster" },
        { "extended L2, cluster bits 12",
          { .virtual_size = MiB, .cluster_bits = 12, .extended_l2 = TRUE },
          "16384" },
        { "extended L2, cluster bits 13",
          { .virtual_size = MiB, .cluster_bits = 13, .extended_l2 = TRUE },
          "16384" },
        { "relative backing file",
          { .virtual_size = MiB, .backing_file = "template.qcow2",
            .backing_format = "qcow2" }, "absolute" },
        { "empty backing file",
          { .virtual_size = MiB, .backing_file = "",
            .backing_format = "qcow2" }, "absolute" },
        { "1024-byte backing file",
          { .virtual_size = MiB, .backing_file = path1024,
            .backing_format = "qcow2" }, "1023" },
        { "backing file too long for cluster 0",
          { .virtual_size = MiB, .backing_file = path377, .cluster_bits = 9,
            .backing_format = "raw" }, "376" },
        { "backing file without format",
          { .virtual_size = MiB, .backing_file = "/t.qcow2" }, "format" },
        { "backing format vmdk",
          { .virtual_size = MiB, .backing_file = "/t.vmdk",
            .backing_format = "vmdk" }, "vmdk" },
        { "backing format QCOW2",
          { .virtual_size = MiB, .backing_file = "/t.qcow2",
            .backing_format = "QCOW2" }, "QCOW2" },
        { "empty backing format",
          { .virtual_size = MiB, .backing_file = "/t.qcow2",
            .backing_format = "" }, "format" },
        { "backing format without backing file",
          { .virtual_size = MiB, .backing_format = "qcow2" }, "without" },
    };
    size_t i;

    /* Make the fixed-length names absolute. */
    path1023[0] = path1024[0] = path377[0] = '/';
    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_test_message("%s", cases[i].what);
        assertInvalid(dir, &cases[i].spec, cases[i].needle);
    }

    /* One byte less is fine. */
    {
        SpQcow2Spec spec = {
            .virtual_size = MiB,
            .backing_file = path1023,
            .backing_format = "qcow2",
        };

        g_assert_true(spQcow2SpecValidate(&spec, NULL));
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* Holes in the image must read as zeros, so old content is refused. */
static void
testNonEmptyFile(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "used.qcow2", NULL);
    g_autoptr(GError) error = NULL;
    g_autofree char *content = NULL;
    SpQcow2Spec spec = { .virtual_size = MiB };
    int fd;

    g_assert_true(g_file_set_contents(path, "old", -1, NULL));
    fd = open(path, O_WRONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_assert_false(spQcow2WriteFd(fd, &spec, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_cmpint(close(fd), ==, 0);
    g_assert_true(g_file_get_contents(path, &content, NULL, NULL));
    g_assert_cmpstr(content, ==, "old");
    spTestTempDirFree(g_steal_pointer(&dir));
}


int
main(int argc, char **argv)
{
    static const guint32 grid_bits[] = { 9, 12, 16, 21 };
    size_t i;
    int ret;

    g_test_init(&argc, &argv, NULL);

    for (i = 0; i < G_N_ELEMENTS(grid_bits); i++) {
        g_autofree char *name =
            g_strdup_printf("/qcow2-overlay/qemu-oracle/cluster-bits-%u",
                            grid_bits[i]);

        g_test_add_data_func(name, GUINT_TO_POINTER(grid_bits[i]),
                             testOracleGrid);
    }
    g_test_add_func("/qcow2-overlay/size-rounding", testSizeRounding);
    g_test_add_func("/qcow2-overlay/default-cluster-bits",
                    testDefaultClusterBits);
    g_test_add_func("/qcow2-overlay/max-virtual-size", testMaxVirtualSize);
    g_test_add_func("/qcow2-overlay/backing-fits-cluster0",
                    testBackingFitsCluster0);
    g_test_add_func("/qcow2-overlay/refcount-boundaries",
                    testRefcountBoundaries);
    g_test_add_func("/qcow2-overlay/invalid-specs", testInvalidSpecs);
    g_test_add_func("/qcow2-overlay/non-empty-file", testNonEmptyFile);

    ret = g_test_run();
    freeTemplates();
    return ret;
}
