/*
 * test_transient_layer.c: overlays of transient disks left behind
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/image_lock.h"
#include "fs/transient_layer.h"
#include "test_helpers.h"

/* Long enough after every file of the test was made for none to be young */
#define LATER (SP_TRANSIENT_LAYER_GRACE_SECONDS + 10)

static void
testNames(void)
{
    g_assert_true(spTransientLayerName("pc01.qcow2.TRANSIENT-pc01"));
    g_assert_true(spTransientLayerName("win10.qcow2.TRANSIENT-room 4"));
    g_assert_false(spTransientLayerName("pc01.qcow2"));
    g_assert_false(spTransientLayerName("pc01.qcow2.TRANSIENT-"));
    g_assert_false(spTransientLayerName(".TRANSIENT-pc01"));
    g_assert_false(spTransientLayerName(".pc01.qcow2.TRANSIENT-pc01"));
    g_assert_false(spTransientLayerName("pc01.qcow2.transient-pc01"));
}


static char *
makeFile(const char *dir, const char *name)
{
    char *path = g_build_filename(dir, name, NULL);

    g_assert_true(g_file_set_contents(path, "QFI\xfb", 4, NULL));
    return path;
}


typedef struct {
    char *dir;
    GString *log;
    guint handler;
} Fixture;


static void
setUp(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    f->dir = spTestTempDir();
    f->log = g_string_new(NULL);
    f->handler = g_log_set_handler("stormpool", G_LOG_LEVEL_MASK, spTestCaptureLog, f->log);
}


static void
tearDown(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_log_remove_handler("stormpool", f->handler);
    g_string_free(f->log, TRUE);
    spTestTempDirFree(f->dir);
}


/* The overlay of a guest that died unseen goes, with a line in the log */
static void
testRemovesStale(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *layer = makeFile(f->dir, "pc01.qcow2.TRANSIENT-pc01");
    g_autofree char *expected = g_strdup_printf(
        "warning: removed '%s', the overlay of a transient disk that no QEMU holds "
        "(its guest stopped without libvirt seeing it)\n", layer);

    g_assert_cmpuint(spTransientLayersRemoveStale(f->dir, g_get_real_time() / G_USEC_PER_SEC +
                                                  LATER), ==, 1);
    g_assert_false(g_file_test(layer, G_FILE_TEST_EXISTS));
    g_assert_cmpstr(f->log->str, ==, expected);
}


/* A running guest's overlay is held by its QEMU */
static void
testKeepsHeld(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *layer = makeFile(f->dir, "pc01.qcow2.TRANSIENT-pc01");
    g_autoptr(GError) err = NULL;
    int fd = spImageLockReader(layer, &err);

    g_assert_no_error(err);
    g_assert_cmpuint(spTransientLayersRemoveStale(f->dir, g_get_real_time() / G_USEC_PER_SEC +
                                                  LATER), ==, 0);
    g_assert_true(g_file_test(layer, G_FILE_TEST_IS_REGULAR));
    g_assert_cmpstr(f->log->str, ==, "");
    close(fd);
}


/* libvirt creates the overlay before QEMU opens it: a young one stays */
static void
testKeepsYoung(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *layer = makeFile(f->dir, "pc01.qcow2.TRANSIENT-pc01");

    g_assert_cmpuint(spTransientLayersRemoveStale(f->dir, g_get_real_time() / G_USEC_PER_SEC),
                     ==, 0);
    g_assert_true(g_file_test(layer, G_FILE_TEST_IS_REGULAR));
}


/* Only regular files named like overlays: volumes, hidden files, links
 * and directories are never touched */
static void
testKeepsOthers(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *volume = makeFile(f->dir, "pc01.qcow2");
    g_autofree char *hidden = makeFile(f->dir, ".pc01.qcow2.TRANSIENT-pc01");
    g_autofree char *link = g_build_filename(f->dir, "pc02.qcow2.TRANSIENT-pc02", NULL);
    g_autofree char *subdir = g_build_filename(f->dir, "pc03.qcow2.TRANSIENT-pc03", NULL);

    g_assert_cmpint(symlink(volume, link), ==, 0);
    g_assert_cmpint(mkdir(subdir, 0700), ==, 0);
    g_assert_cmpuint(spTransientLayersRemoveStale(f->dir, g_get_real_time() / G_USEC_PER_SEC +
                                                  LATER), ==, 0);
    g_assert_true(g_file_test(volume, G_FILE_TEST_IS_REGULAR));
    g_assert_true(g_file_test(hidden, G_FILE_TEST_IS_REGULAR));
    g_assert_true(g_file_test(link, G_FILE_TEST_IS_SYMLINK));
    g_assert_true(g_file_test(subdir, G_FILE_TEST_IS_DIR));
    g_assert_cmpint(rmdir(subdir), ==, 0);
}


static void
testMissingDir(void)
{
    g_assert_cmpuint(spTransientLayersRemoveStale("/nonexistent/stormpool-tier", G_MAXINT32),
                     ==, 0);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* the removals are logged as warnings, which GTest makes fatal */
    g_log_set_always_fatal(G_LOG_FATAL_MASK);
    g_test_add_func("/transient-layer/names", testNames);
    g_test_add("/transient-layer/removes-stale", Fixture, NULL, setUp, testRemovesStale,
               tearDown);
    g_test_add("/transient-layer/keeps-held", Fixture, NULL, setUp, testKeepsHeld, tearDown);
    g_test_add("/transient-layer/keeps-young", Fixture, NULL, setUp, testKeepsYoung, tearDown);
    g_test_add("/transient-layer/keeps-others", Fixture, NULL, setUp, testKeepsOthers,
               tearDown);
    g_test_add_func("/transient-layer/missing-dir", testMissingDir);
    return g_test_run();
}
