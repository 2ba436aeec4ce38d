/*
 * test_template_stamps.c: the template stamps file of a pool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <glib/gstdio.h>
#include <string.h>

#include "stormpool/error.h"
#include "replica/template_stamps.h"
#include "test_helpers.h"


static void
addStamp(GHashTable *stamps, const char *name, guint64 ino, gint64 size,
         gint64 sec, gint64 nsec)
{
    SpTemplateStamp stamp = { ino, size, sec, nsec };

    spTemplateStampsSet(stamps, name, &stamp);
}


static void
testRoundTrip(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, SP_TEMPLATE_STAMPS_FILE, NULL);
    g_autoptr(GHashTable) saved = spTemplateStampsNew();
    g_autoptr(GHashTable) loaded = NULL;
    g_autoptr(GError) error = NULL;
    const SpTemplateStamp *stamp;

    addStamp(saved, "win10.qcow2", 12, 21474836480, 1700000000, 123456789);
    addStamp(saved, " leading space", 13, 1, 0, 0);
    addStamp(saved, "new\nline\tand \"quotes\" and \\", 14, 2, 1, 999999999);
    addStamp(saved, "ümlaut.img", 15, 3, -5, 1);
    g_assert_true(spTemplateStampsSave(path, saved, &error));
    g_assert_no_error(error);

    loaded = spTemplateStampsLoad(path, &error);
    g_assert_no_error(error);
    g_assert_true(spTemplateStampsEqual(saved, loaded));
    stamp = g_hash_table_lookup(loaded, "win10.qcow2");
    g_assert_nonnull(stamp);
    g_assert_cmpint(stamp->size, ==, 21474836480);
    g_assert_cmpint(stamp->mtime_nsec, ==, 123456789);
    g_assert_nonnull(g_hash_table_lookup(loaded, " leading space"));
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testMissingFileIsEmpty(void)
{
    g_autoptr(GHashTable) loaded = NULL;
    g_autoptr(GError) error = NULL;

    loaded = spTemplateStampsLoad("/nonexistent/" SP_TEMPLATE_STAMPS_FILE, &error);
    g_assert_no_error(error);
    g_assert_nonnull(loaded);
    g_assert_cmpuint(g_hash_table_size(loaded), ==, 0);
}


/* A damaged file loses the damaged lines, never the pool. */
static void
testBadLinesSkipped(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, SP_TEMPLATE_STAMPS_FILE, NULL);
    g_autoptr(GHashTable) loaded = NULL;
    g_autoptr(GError) error = NULL;
    const char *text =
        "# comment\n"
        "12 100 5.000000001 good.img\n"
        "12 100 5.000000001\n"                 /* no name */
        "12 100 5.000000001 \n"                /* empty name */
        "x 100 5.0 letters.img\n"
        "12 -1 5.0 negative.img\n"
        "12 100 5.1000000000 nsec.img\n"
        "12 100 5.0 a/b.img\n"                 /* not a file name */
        "12 100 5.0\tTAB.img\n"
        "\n"
        "12 100";                              /* truncated */

    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    loaded = spTemplateStampsLoad(path, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(g_hash_table_size(loaded), ==, 1);
    g_assert_nonnull(g_hash_table_lookup(loaded, "good.img"));
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* A name whose last escape is cut off (a lone backslash at the end of the
 * line, found by fuzz/fuzz_template_stamps) is a damaged line too: it was
 * loaded without its backslash, and glib logged a warning for it, which
 * GTest makes fatal. */
static void
testCutEscapeSkipped(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, SP_TEMPLATE_STAMPS_FILE, NULL);
    g_autoptr(GHashTable) loaded = NULL;
    g_autoptr(GError) error = NULL;
    const char *text =
        "12 100 5.0 cut\\\n"                   /* a lone backslash */
        "12 100 5.0 \\\n"
        "12 100 5.0 three\\\\\\\n"
        "12 100 5.0 escaped\\\\\n"             /* an escaped backslash */
        "12 100 5.0 \\\\\n";

    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    loaded = spTemplateStampsLoad(path, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(g_hash_table_size(loaded), ==, 2);
    g_assert_nonnull(g_hash_table_lookup(loaded, "escaped\\"));
    g_assert_nonnull(g_hash_table_lookup(loaded, "\\"));
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testUnreadable(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autoptr(GHashTable) loaded = NULL;
    g_autoptr(GError) error = NULL;

    /* a directory where the file should be */
    loaded = spTemplateStampsLoad(dir, &error);
    g_assert_null(loaded);
    g_assert_error(error, SP_ERROR, SP_ERROR_IO);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testEquality(void)
{
    SpTemplateStamp a = { 7, 100, 5, 1 };
    SpTemplateStamp b = a;
    g_autoptr(GHashTable) x = spTemplateStampsNew();
    g_autoptr(GHashTable) y = spTemplateStampsNew();

    g_assert_true(spTemplateStampEqual(&a, &b));
    b.mtime_nsec = 2;
    g_assert_false(spTemplateStampEqual(&a, &b));
    g_assert_true(spTemplateStampSameInode(&a, &b));
    b = a;
    b.size = 101;
    g_assert_false(spTemplateStampEqual(&a, &b));
    b = a;
    b.ino = 8;
    g_assert_false(spTemplateStampEqual(&a, &b));
    g_assert_false(spTemplateStampSameInode(&a, &b));

    addStamp(x, "t.img", 7, 100, 5, 1);
    addStamp(y, "t.img", 7, 100, 5, 1);
    g_assert_true(spTemplateStampsEqual(x, y));
    addStamp(y, "u.img", 9, 1, 1, 1);
    g_assert_false(spTemplateStampsEqual(x, y));
    g_assert_false(spTemplateStampsEqual(y, x));
    addStamp(x, "u.img", 9, 1, 1, 2);
    g_assert_false(spTemplateStampsEqual(x, y));
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/template-stamps/round-trip", testRoundTrip);
    g_test_add_func("/template-stamps/missing-file-is-empty", testMissingFileIsEmpty);
    g_test_add_func("/template-stamps/bad-lines-skipped", testBadLinesSkipped);
    g_test_add_func("/template-stamps/cut-escape-skipped", testCutEscapeSkipped);
    g_test_add_func("/template-stamps/unreadable", testUnreadable);
    g_test_add_func("/template-stamps/equality", testEquality);
    return g_test_run();
}
