/*
 * test_error.c: every error the core returns is of its own domain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <glib/gstdio.h>

#include "stormpool/error.h"
#include "fs/backing_path.h"
#include "util/dir.h"
#include "test_helpers.h"


static void
testDirOpenMissing(void)
{
    g_autofree char *root = spTestTempDir();
    g_autofree char *missing = g_build_filename(root, "gone", NULL);
    g_autoptr(GError) err = NULL;

    g_assert_null(spDirOpen(missing, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_NOT_FOUND);
    g_assert_cmpint(spErrorErrno(err), ==, ENOENT);
    spTestTempDirFree(g_steal_pointer(&root));
}


static void
testDirOpenNotDir(void)
{
    g_autofree char *root = spTestTempDir();
    g_autofree char *file = g_build_filename(root, "file", NULL);
    g_autoptr(GError) err = NULL;

    g_assert_true(g_file_set_contents(file, "x", 1, NULL));
    g_assert_null(spDirOpen(file, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IO);
    g_assert_cmpint(spErrorErrno(err), ==, ENOTDIR);
    spTestTempDirFree(g_steal_pointer(&root));
}


/* G_FILE_ERROR_ACCES is 2, SP_ERROR_EXISTS too: read without its domain,
 * a permission error became "storage volume already exists". */
static void
testForeignDomainIsNotOurs(void)
{
    g_autoptr(GError) err = g_error_new_literal(G_FILE_ERROR, G_FILE_ERROR_ACCES, "denied");

    g_assert_cmpint(G_FILE_ERROR_ACCES, ==, SP_ERROR_EXISTS);
    g_assert_cmpint(spErrorCode(err), ==, SP_ERROR_IO);
    g_assert_cmpint(spErrorErrno(err), ==, 0);
}


static void
testOwnDomainCode(void)
{
    g_autoptr(GError) err = g_error_new_literal(SP_ERROR, SP_ERROR_IN_USE, "in use");

    g_assert_cmpint(spErrorCode(err), ==, SP_ERROR_IN_USE);
}


/* A core operation that lists a directory which is not one: the check
 * before deleting a template reads the secondary tier. */
static void
testDependentsOfUnreadableTier(void)
{
    g_autofree char *root = spTestTempDir();
    g_autofree char *primary = g_build_filename(root, "hdd", NULL);
    g_autofree char *tier = g_build_filename(root, "ssd", NULL);
    g_autofree char *template = g_build_filename(primary, "win10.qcow2", NULL);
    g_autoptr(SpPool) pool = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_cmpint(g_mkdir(primary, 0755), ==, 0);
    g_assert_true(g_file_set_contents(tier, "not a directory", -1, NULL));
    g_assert_true(g_file_set_contents(template, "template", -1, NULL));
    pool = spPoolNew(primary, tier, SP_REPLICA_NONE, FALSE);
    g_assert_false(spPoolDeleteVolume(pool, "win10.qcow2", template, NULL, &err));
    g_assert_nonnull(err);
    g_assert_true(err->domain == SP_ERROR);
    g_assert_cmpint(spErrorErrno(err), ==, ENOTDIR);
    g_assert_true(g_file_test(template, G_FILE_TEST_IS_REGULAR));
    g_clear_pointer(&pool, spPoolUnref);
    spTestTempDirFree(g_steal_pointer(&root));
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/error/dir-open/missing", testDirOpenMissing);
    g_test_add_func("/error/dir-open/not-a-directory", testDirOpenNotDir);
    g_test_add_func("/error/code/foreign-domain", testForeignDomainIsNotOurs);
    g_test_add_func("/error/code/own-domain", testOwnDomainCode);
    g_test_add_func("/error/pool/tier-not-a-directory", testDependentsOfUnreadableTier);
    return g_test_run();
}
