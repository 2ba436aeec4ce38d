/*
 * test_hot_set.c: hot sets, hot replicas and the RAM tier's accounting
 *
 * qemu-img and qemu-io are the oracles: a hot replica must pass
 * `qemu-img check`, read exactly like its template (`qemu-img compare`)
 * and hold the hot set's clusters itself (`qemu-io -c alloc`).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "replica/hot_replica.h"
#include "image/hot_set.h"
#include "replica/ram_tier.h"
#include "replica/template_replica.h"
#include "test_helpers.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)

static char *
rangesText(const SpHotSet *set)
{
    GString *out = g_string_new(NULL);
    guint count;
    const SpRange *r = spHotSetRanges(set, &count);
    guint i;

    for (i = 0; i < count; i++)
        g_string_append_printf(out, "%s%" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT,
                               i ? " " : "", r[i].offset, r[i].length);
    return g_string_free(out, FALSE);
}


static void
testParseMergesATrace(void)
{
    const char *trace =
        "# a boot trace: reads in the order the guest made them\n"
        "8192 4096\n"
        "0 4096\n"
        "\n"
        "  4096\t4096  \n"          /* touches both neighbours */
        "1048576 65536\n"
        "1050000 100000\n";         /* overlaps the previous one */
    g_autoptr(GError) error = NULL;
    g_autoptr(SpHotSet) set = spHotSetParse(trace, 16 * MiB, &error);
    g_autofree char *ranges = NULL;
    g_autofree char *text = NULL;
    g_autoptr(SpHotSet) again = NULL;
    g_autofree char *again_ranges = NULL;

    g_assert_no_error(error);
    ranges = rangesText(set);
    g_assert_cmpstr(ranges, ==, "0+12288 1048576+101424");
    g_assert_cmpuint(spHotSetBytes(set), ==, 12288 + 101424);
    text = spHotSetFormat(set);
    g_assert_cmpstr(text, ==,
                    "# stormpool hot set: 2 ranges, 113712 bytes of a 16777216-byte disk\n"
                    "0 12288\n"
                    "1048576 101424\n");
    again = spHotSetParse(text, 16 * MiB, &error);
    g_assert_no_error(error);
    again_ranges = rangesText(again);
    g_assert_cmpstr(again_ranges, ==, ranges);
}


static void
checkParseError(const char *text, const char *message)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(SpHotSet) set = spHotSetParse(text, 1 * MiB, &error);

    g_assert_null(set);
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_cmpstr(error->message, ==, message);
}


static void
testParseRefusesBadLines(void)
{
    checkParseError("0 4096\nfoo 12\n",
                    "hot set line 2: expected 'OFFSET LENGTH' in bytes, got 'foo 12'");
    checkParseError("0 4096 7\n",
                    "hot set line 1: expected 'OFFSET LENGTH' in bytes, got '0 4096 7'");
    checkParseError("-1 4096\n",
                    "hot set line 1: expected 'OFFSET LENGTH' in bytes, got '-1 4096'");
    checkParseError("# c\n1048000 1000\n",
                    "hot set line 2: range 1048000+1000 is empty or past the end of a "
                    "1048576-byte disk");
    checkParseError("0 0\n",
                    "hot set line 1: range 0+0 is empty or past the end of a 1048576-byte disk");
    checkParseError("18446744073709551615 2\n",
                    "hot set line 1: range 18446744073709551615+2 is empty or past the end "
                    "of a 1048576-byte disk");
}


static void
testAlignToClusters(void)
{
    g_autoptr(SpHotSet) set = spHotSetNew(1 * MiB + 4096);
    g_autofree char *ranges = NULL;

    g_assert_true(spHotSetAdd(set, 100, 10, NULL));
    g_assert_true(spHotSetAdd(set, 65536 + 70000, 4096, NULL));
    g_assert_true(spHotSetAdd(set, 1 * MiB + 100, 200, NULL));   /* in the last, short cluster */
    spHotSetAlign(set, 65536);
    ranges = rangesText(set);
    g_assert_cmpstr(ranges, ==, "0+65536 131072+65536 1048576+4096");
}


static void
testSaveLoad(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "win10.hotset", NULL);
    g_autoptr(SpHotSet) set = spHotSetNew(64 * MiB);
    g_autoptr(SpHotSet) loaded = NULL;
    g_autoptr(SpHotSet) missing = NULL;
    g_autofree char *a = NULL;
    g_autofree char *b = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GDir) listing = NULL;

    g_assert_true(spHotSetAdd(set, 4 * MiB, 1 * MiB, NULL));
    g_assert_true(spHotSetSave(set, path, &error));
    g_assert_no_error(error);
    g_assert_true(spHotSetAdd(set, 0, 4096, NULL));
    g_assert_true(spHotSetSave(set, path, &error));      /* replaces */
    g_assert_no_error(error);
    loaded = spHotSetLoad(path, 64 * MiB, &error);
    g_assert_no_error(error);
    a = rangesText(set);
    b = rangesText(loaded);
    g_assert_cmpstr(a, ==, b);
    listing = g_dir_open(dir, 0, NULL);
    g_assert_cmpstr(g_dir_read_name(listing), ==, "win10.hotset");
    g_assert_null(g_dir_read_name(listing));
    /* a set learned for another size is refused, naming the file */
    g_clear_pointer(&loaded, spHotSetFree);
    loaded = spHotSetLoad(path, 1 * MiB, &error);
    g_assert_null(loaded);
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_true(g_str_has_prefix(error->message, path));
    g_clear_error(&error);
    missing = spHotSetLoad("/nonexistent/x.hotset", 1 * MiB, &error);
    g_assert_null(missing);
    g_assert_error(error, SP_ERROR, SP_ERROR_NOT_FOUND);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
run0(const char * const *argv)
{
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    int rc = spTestRun(argv, &out, &err);

    if (rc != 0)
        g_error("%s failed (%d): %s %s", argv[0], rc, out, err);
}


static void
qemuIo(const char *path, const char *command)
{
    const char *argv[] = { "qemu-io", "-f", "qcow2", "-c", command, path, NULL };

    run0(argv);
}


static void
qcow2(const char *path, const char *size, const char *backing)
{
    const char *plain[] = { "qemu-img", "create", "-q", "-f", "qcow2", path, size, NULL };
    const char *overlay[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", backing,
                              "-F", "qcow2", path, size, NULL };

    run0(backing ? overlay : plain);
}


/* A learning instance booted with copy-on-read: its overlay holds the
 * clusters the guest read (and wrote), also as "reads as zeros" where the
 * guest read a hole of the template or wrote zeros. */
static void
testLearnFromOverlay(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *tmpl = g_build_filename(dir, "tmpl.qcow2", NULL);
    g_autofree char *learn = g_build_filename(dir, "learn.qcow2", NULL);
    g_autofree char *raw = g_build_filename(dir, "raw.img", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(SpHotSet) set = NULL;
    g_autoptr(SpHotSet) bad = NULL;
    g_autofree char *ranges = NULL;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img not installed");
        return;
    }
    qcow2(tmpl, "2G", NULL);
    qemuIo(tmpl, "write -P 0x11 0 8M");
    qemuIo(tmpl, "write -P 0x22 1536M 1M");
    qcow2(learn, "2G", tmpl);
    {
        const char *cor[] = { "qemu-io", "-C", "-f", "qcow2", "-c", "read 4096 8192",
                              "-c", "read 1536M 100000", learn, NULL };
        run0(cor);
    }
    qemuIo(learn, "write -z 1G 64k");
    {
        /* a hole of the template, read: copy-on-read leaves a zero cluster */
        const char *cor[] = { "qemu-io", "-C", "-f", "qcow2", "-c", "read 1280M 4096", learn,
                              NULL };
        run0(cor);
    }
    set = spHotSetFromOverlay(learn, &error);
    g_assert_no_error(error);
    ranges = rangesText(set);
    /* 1536M is in the fourth L2 table's range; 1536M+100000 ends in the
     * second cluster */
    g_assert_cmpstr(ranges, ==, "0+65536 1073741824+65536 1342177280+65536 1610612736+131072");
    g_clear_pointer(&set, spHotSetFree);
    g_clear_pointer(&ranges, g_free);
    /* the template's own data, without its holes */
    set = spHotSetImageData(learn, "qcow2", &error);
    g_assert_no_error(error);
    ranges = rangesText(set);
    g_assert_cmpstr(ranges, ==, "0+65536 1610612736+131072");
    g_assert_cmpuint(spHotSetVirtualSize(set), ==, 2048 * MiB);

    spTestWriteAt(raw, 0, "not an image", 12);
    bad = spHotSetFromOverlay(raw, &error);
    g_assert_null(bad);
    g_assert_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE);
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* An L1 table pointing outside the file is refused, never followed. */
static void
testLearnRefusesGarbageTables(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "evil.qcow2", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(SpHotSet) set = NULL;
    const guint8 far[8] = { 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00 };

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img not installed");
        return;
    }
    qcow2(path, "64M", NULL);
    spTestWriteAt(path, 40, far, sizeof(far));     /* l1_table_offset */
    set = spHotSetFromOverlay(path, &error);
    g_assert_null(set);
    g_assert_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE);
    g_assert_cmpstr(strstr(error->message, "L1 table"), !=, NULL);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static char *
runOut(const char * const *argv, int *rc)
{
    char *out = NULL;

    *rc = spTestRun(argv, &out, NULL);
    return out;
}


static void
assertAllocated(const char *path, guint64 offset, guint64 length, gboolean expect)
{
    g_autofree char *cmd = g_strdup_printf("alloc %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
                                           offset, length);
    const char *argv[] = { "qemu-io", "-r", "-f", "qcow2", "-c", cmd, path, NULL };
    g_autofree char *want = g_strdup_printf("%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
                                            " bytes allocated", expect ? length : 0, length);
    int rc;
    g_autofree char *out = runOut(argv, &rc);

    g_assert_cmpint(rc, ==, 0);
    if (!strstr(out, want))
        g_error("%s at %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT ": expected '%s', got %s",
                path, offset, length, want, out);
}


static void
makeTemplate(const char *tmpl)
{
    qcow2(tmpl, "1G", NULL);
    qemuIo(tmpl, "write -P 0x5a 0 3M");
    qemuIo(tmpl, "write -P 0xa5 512M 10M");
    qemuIo(tmpl, "write -P 0x33 1000M 64k");
}


static void
testHotReplicaReadsLikeItsTemplate(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *tmpl = g_build_filename(dir, "hdd", "win10.qcow2", NULL);
    g_autofree char *replica = g_build_filename(dir, "ram", ".stormpool-replicas",
                                                "win10.qcow2", "0123456789abcdef", NULL);
    g_autoptr(SpHotSet) set = spHotSetNew(1024 * MiB);
    g_autoptr(GError) error = NULL;
    g_autofree char *hdd = g_build_filename(dir, "hdd", NULL);
    int rc;
    struct stat sb;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img not installed");
        return;
    }
    g_mkdir(hdd, 0755);
    makeTemplate(tmpl);
    g_assert_true(spHotSetAdd(set, 4096, 100, NULL));          /* widened to cluster 0 */
    g_assert_true(spHotSetAdd(set, 512 * MiB + 65536, 6 * MiB, NULL));   /* > one chunk */
    g_assert_true(spHotSetAdd(set, 900 * MiB, 65536, NULL));   /* unallocated in the template */
    spHotReplicaCreate(tmpl, "qcow2", set, replica, NULL, &error);
    g_assert_no_error(error);
    {
        const char *check[] = { "qemu-img", "check", "-q", replica, NULL };
        const char *compare[] = { "qemu-img", "compare", "-q", replica, tmpl, NULL };
        g_autofree char *c1 = runOut(check, &rc);

        g_assert_cmpint(rc, ==, 0);
        g_free(runOut(compare, &rc));
        g_assert_cmpint(rc, ==, 0);                             /* identical contents */
    }
    assertAllocated(replica, 0, 65536, TRUE);
    assertAllocated(replica, 65536, 3 * MiB - 65536, FALSE);   /* only the hot part */
    assertAllocated(replica, 512 * MiB + 65536, 6 * MiB, TRUE);
    assertAllocated(replica, 512 * MiB, 65536, FALSE);
    assertAllocated(replica, 1000 * MiB, 65536, FALSE);
    /* the hole answers itself ("reads as zeros"): no L2 lookup below */
    assertAllocated(replica, 900 * MiB, 65536, TRUE);
    g_assert_cmpint(stat(replica, &sb), ==, 0);
    g_assert_cmpuint(sb.st_mode & 07777, ==, SP_REPLICA_MODE);
    g_assert_cmpuint((guint64) sb.st_size, <=, spHotReplicaSize(set));
    /* never over an existing replica */
    g_assert_false(spHotReplicaCreate(tmpl, "qcow2", set, replica, NULL, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_EXISTS);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static guint
countEntries(const char *path)
{
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    guint n = 0;

    while (dir && g_dir_read_name(dir))
        n++;
    return n;
}


static void
testHotReplicaFailuresLeaveNothing(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *tmpl = g_build_filename(dir, "win10.qcow2", NULL);
    g_autofree char *rdir = g_build_filename(dir, "replicas", NULL);
    g_autofree char *replica = g_build_filename(rdir, "0123456789abcdef", NULL);
    g_autoptr(SpHotSet) set = spHotSetNew(1024 * MiB);
    g_autoptr(SpHotSet) wrong = spHotSetNew(2048 * MiB);
    g_autoptr(GError) error = NULL;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img not installed");
        return;
    }
    makeTemplate(tmpl);
    g_assert_true(spHotSetAdd(set, 0, 65536, NULL));
    g_assert_true(spHotSetAdd(wrong, 0, 65536, NULL));
    /* the copy fails: no replica, no temporary file */
    g_assert_false(spHotReplicaCreate(tmpl, "qcow2", set, replica, "false", &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_IO);
    g_clear_error(&error);
    g_assert_cmpuint(countEntries(rdir), ==, 0);
    /* qemu-io's own complaint reaches the error; a missing binary is an
     * SP_ERROR too */
    g_assert_false(spHotReplicaCreate(tmpl, "qcow2", set, replica, "qemu-img", &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_IO);
    g_assert_nonnull(strstr(error->message, "with qemu-io failed: qemu-img: "));
    g_clear_error(&error);
    g_assert_false(spHotReplicaCreate(tmpl, "qcow2", set, replica, "/nonexistent/qemu-io",
                                      &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_IO);
    g_assert_true(g_str_has_prefix(error->message, "cannot run '/nonexistent/qemu-io'"));
    g_clear_error(&error);
    g_assert_cmpuint(countEntries(rdir), ==, 0);
    /* a hot set of another disk size */
    g_assert_false(spHotReplicaCreate(tmpl, "qcow2", wrong, replica, NULL, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_cmpstr(strstr(error->message, "learn it again"), !=, NULL);
    g_clear_error(&error);
    g_assert_false(spHotReplicaCreate("win10.qcow2", "qcow2", set, replica, NULL, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_cmpuint(countEntries(rdir), ==, 0);
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* An executable shell script @name in @dir running @body. */
static char *
writeScript(const char *dir, const char *name, const char *body)
{
    g_autofree char *text = g_strdup_printf("#!/bin/sh\n%s\n", body);
    char *path = g_build_filename(dir, name, NULL);

    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    g_assert_cmpint(g_chmod(path, 0755), ==, 0);
    return path;
}


/* qemu-io's exit status decides, not what it prints: a run that copies
 * and then talks of errors succeeds, one that exits 1 silently fails. */
static void
testHotReplicaJudgedByExitStatus(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *tmpl = g_build_filename(dir, "win10.qcow2", NULL);
    g_autofree char *replica = g_build_filename(dir, "r", "0123456789abcdef", NULL);
    g_autofree char *chatty = writeScript(dir, "chatty", "qemu-io \"$@\" || exit\n"
                                          "echo 'read failed? no: error-free' >&2\n"
                                          "echo 'Error: just a word'");
    g_autofree char *silent = writeScript(dir, "silent", "qemu-io \"$@\" >/dev/null\n"
                                          "exit 1");
    g_autoptr(SpHotSet) set = spHotSetNew(1024 * MiB);
    g_autoptr(GError) error = NULL;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img not installed");
        return;
    }
    makeTemplate(tmpl);
    g_assert_true(spHotSetAdd(set, 0, 65536, NULL));
    g_assert_true(spHotReplicaCreate(tmpl, "qcow2", set, replica, chatty, &error));
    g_assert_no_error(error);
    g_assert_cmpint(g_unlink(replica), ==, 0);

    g_assert_false(spHotReplicaCreate(tmpl, "qcow2", set, replica, silent, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_IO);
    g_assert_true(g_str_has_suffix(error->message,
                                   "with qemu-io failed: Child process exited with code 1"));
    g_assert_false(g_file_test(replica, G_FILE_TEST_EXISTS));
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* A host reboot empties the RAM tier: Ensure makes the replica again at
 * the same path, and does nothing when it is there. */
static void
testEnsureRebuildsAfterReboot(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *tmpl = g_build_filename(dir, "win10.qcow2", NULL);
    g_autofree char *replica = g_build_filename(dir, "shm", "win10", "0123456789abcdef", NULL);
    g_autofree char *inst = g_build_filename(dir, "pc01.qcow2", NULL);
    g_autoptr(SpHotSet) set = spHotSetNew(1024 * MiB);
    g_autoptr(GError) error = NULL;
    gboolean made = TRUE;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img not installed");
        return;
    }
    makeTemplate(tmpl);
    g_assert_true(spHotSetAdd(set, 512 * MiB, 1 * MiB, NULL));
    g_assert_true(spHotReplicaEnsure(tmpl, "qcow2", set, replica, NULL, &made, &error));
    g_assert_no_error(error);
    g_assert_true(made);
    g_assert_true(spHotReplicaEnsure(tmpl, "qcow2", set, replica, NULL, &made, &error));
    g_assert_false(made);
    qcow2(inst, "1G", replica);
    g_assert_cmpint(g_unlink(replica), ==, 0);                 /* the reboot */
    g_assert_true(spHotReplicaEnsure(tmpl, "qcow2", set, replica, NULL, &made, &error));
    g_assert_true(made);
    {
        const char *read[] = { "qemu-io", "-r", "-f", "qcow2", "-c", "read -P 0xa5 512M 10M",
                               inst, NULL };
        int rc;
        g_autofree char *out = runOut(read, &rc);

        g_assert_cmpint(rc, ==, 0);
        g_assert_null(strstr(out, "failed"));
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testParseCap(void)
{
    guint64 cap = 0;
    g_autoptr(GError) error = NULL;

    g_assert_true(spRamTierParseCap("2G", &cap, NULL));
    g_assert_cmpuint(cap, ==, 2048 * MiB);
    g_assert_true(spRamTierParseCap("512MiB", &cap, NULL));
    g_assert_cmpuint(cap, ==, 512 * MiB);
    g_assert_true(spRamTierParseCap("4096", &cap, NULL));
    g_assert_cmpuint(cap, ==, 4096);
    g_assert_true(spRamTierParseCap("1kb", &cap, NULL));
    g_assert_cmpuint(cap, ==, 1024);
    g_assert_false(spRamTierParseCap("0", &cap, NULL));
    g_assert_false(spRamTierParseCap("2X", &cap, NULL));
    g_assert_false(spRamTierParseCap("2Gx", &cap, NULL));
    g_assert_false(spRamTierParseCap("-1G", &cap, NULL));
    g_assert_false(spRamTierParseCap("99999999999T", &cap, NULL));
    g_assert_false(spRamTierParseCap("", &cap, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_cmpstr(error->message, ==,
                    "invalid RAM tier size '': expected a positive size such as '2G' or '512M'");
}


static GPtrArray *
replicasOf(void)
{
    GPtrArray *all = g_ptr_array_new_with_free_func((GDestroyNotify) spRamReplicaFree);

    g_ptr_array_add(all, spRamReplicaNew("/shm/a", 300 * MiB, 0, 30));
    g_ptr_array_add(all, spRamReplicaNew("/shm/b", 400 * MiB, 2, 10));   /* in use */
    g_ptr_array_add(all, spRamReplicaNew("/shm/c", 200 * MiB, 0, 20));
    return all;
}


static char *
paths(GPtrArray *chosen)
{
    GString *out = g_string_new(NULL);
    guint i;

    for (i = 0; i < chosen->len; i++)
        g_string_append_printf(out, "%s%s", i ? " " : "",
                               ((SpRamReplica *) chosen->pdata[i])->path);
    return g_string_free(out, FALSE);
}


static void
testPlanRoomEvictsUnusedLeastRecentFirst(void)
{
    g_autoptr(GPtrArray) all = replicasOf();
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) none = spRamTierPlanRoom("/shm", 2048 * MiB, 900 * MiB, 1000 * MiB,
                                                  all, &error);
    g_autoptr(GPtrArray) one = NULL;
    g_autoptr(GPtrArray) two = NULL;
    g_autoptr(GPtrArray) refused = NULL;
    g_autofree char *p1 = NULL;
    g_autofree char *p2 = NULL;

    g_assert_no_error(error);
    g_assert_cmpuint(none->len, ==, 0);
    one = spRamTierPlanRoom("/shm", 1024 * MiB, 900 * MiB, 250 * MiB, all, &error);
    g_assert_no_error(error);
    p1 = paths(one);
    g_assert_cmpstr(p1, ==, "/shm/c");
    two = spRamTierPlanRoom("/shm", 1024 * MiB, 900 * MiB, 500 * MiB, all, &error);
    g_assert_no_error(error);
    p2 = paths(two);
    g_assert_cmpstr(p2, ==, "/shm/c /shm/a");
    refused = spRamTierPlanRoom("/shm", 1024 * MiB, 900 * MiB, 700 * MiB, all, &error);
    g_assert_null(refused);
    g_assert_error(error, SP_ERROR, SP_ERROR_NO_SPACE);
    g_assert_cmpstr(error->message, ==,
                    "RAM tier '/shm' is capped at 1.0 GiB: 900.0 MiB are in use and a replica "
                    "needs 700.0 MiB more; evicting every replica no instance uses would free "
                    "only 500.0 MiB");
}


static void
testMakeRoomRemovesReplicas(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *old = g_build_filename(dir, ".stormpool-replicas", "a.qcow2",
                                            "0123456789abcdef", NULL);
    g_autofree char *used_path = g_build_filename(dir, ".stormpool-replicas", "b.qcow2",
                                                  "fedcba9876543210", NULL);
    g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func((GDestroyNotify) spRamReplicaFree);
    g_autoptr(GPtrArray) evicted = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GError) error = NULL;
    g_autofree char *data = g_malloc0(256 * KiB);
    guint64 used = 0;
    g_autofree char *old_dir = g_path_get_dirname(old);
    g_autofree char *used_dir = g_path_get_dirname(used_path);

    memset(data, 1, 256 * KiB);
    g_assert_cmpint(g_mkdir_with_parents(old_dir, 0711), ==, 0);
    g_assert_cmpint(g_mkdir_with_parents(used_dir, 0711), ==, 0);
    spTestWriteAt(old, 0, data, 256 * KiB);
    spTestWriteAt(used_path, 0, data, 256 * KiB);
    g_assert_true(spRamTierUsage(dir, &used, &error));
    g_assert_cmpuint(used, >=, 512 * KiB);
    g_ptr_array_add(all, spRamReplicaNew(old, 256 * KiB, 0, 1));
    g_ptr_array_add(all, spRamReplicaNew(used_path, 256 * KiB, 1, 0));
    g_assert_true(spRamTierMakeRoom(dir, used + 100 * KiB, 200 * KiB, all, evicted, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(evicted->len, ==, 1);
    g_assert_cmpstr(evicted->pdata[0], ==, old);
    g_assert_false(g_file_test(old, G_FILE_TEST_EXISTS));
    g_assert_true(g_file_test(used_path, G_FILE_TEST_EXISTS));
    /* the one in use stays, and the cap holds */
    g_ptr_array_remove_index(all, 0);
    g_assert_false(spRamTierMakeRoom(dir, 300 * KiB, 200 * KiB, all, evicted, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_NO_SPACE);
    g_assert_true(g_file_test(used_path, G_FILE_TEST_EXISTS));
    g_clear_error(&error);
    /* a tier emptied by a reboot does not exist yet: nothing in use */
    g_assert_true(spRamTierUsage("/nonexistent-ram-tier", &used, &error));
    g_assert_cmpuint(used, ==, 0);
    spTestTempDirFree(g_steal_pointer(&dir));
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/hot_set/parse-merges-a-trace", testParseMergesATrace);
    g_test_add_func("/hot_set/parse-refuses-bad-lines", testParseRefusesBadLines);
    g_test_add_func("/hot_set/align-to-clusters", testAlignToClusters);
    g_test_add_func("/hot_set/save-load", testSaveLoad);
    g_test_add_func("/hot_set/learn-from-overlay", testLearnFromOverlay);
    g_test_add_func("/hot_set/learn-refuses-garbage-tables", testLearnRefusesGarbageTables);
    g_test_add_func("/hot_replica/reads-like-its-template", testHotReplicaReadsLikeItsTemplate);
    g_test_add_func("/hot_replica/failures-leave-nothing", testHotReplicaFailuresLeaveNothing);
    g_test_add_func("/hot_replica/judged-by-exit-status", testHotReplicaJudgedByExitStatus);
    g_test_add_func("/hot_replica/ensure-rebuilds-after-reboot", testEnsureRebuildsAfterReboot);
    g_test_add_func("/ram_tier/parse-cap", testParseCap);
    g_test_add_func("/ram_tier/plan-room-evicts-unused-lru", testPlanRoomEvictsUnusedLeastRecentFirst);
    g_test_add_func("/ram_tier/make-room-removes-replicas", testMakeRoomRemovesReplicas);
    return g_test_run();
}
