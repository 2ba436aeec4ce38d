/*
 * test_tier_layout.c: checks of the two tier directories
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "fs/tier_layout.h"
#include "test_helpers.h"

typedef struct {
    char *root;
    char *primary;
    char *secondary;
} Fixture;


static void
fixtureSetUp(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    f->root = spTestTempDir();
    f->primary = g_build_filename(f->root, "hdd", NULL);
    f->secondary = g_build_filename(f->root, "ssd", NULL);
    g_assert_cmpint(g_mkdir(f->primary, 0755), ==, 0);
    g_assert_cmpint(g_mkdir(f->secondary, 0755), ==, 0);
}


static void
fixtureTearDown(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    spTestTempDirFree(f->root);
    g_free(f->primary);
    g_free(f->secondary);
}


static void
assertCheckFails(const char *primary, const char *secondary,
                 int code, const char *fragment)
{
    g_autoptr(GError) error = NULL;

    g_assert_false(spTierLayoutCheck(primary, secondary, &error));
    g_assert_error(error, SP_ERROR, code);
    if (!strstr(error->message, fragment))
        g_error("'%s' not in '%s'", fragment, error->message);
}


static void
testOverlap(void)
{
    g_assert_true(spTierPathsOverlap("/srv/a", "/srv/a"));
    g_assert_true(spTierPathsOverlap("/srv/a/", "//srv//a"));
    g_assert_true(spTierPathsOverlap("/srv/a", "/srv/a/b"));
    g_assert_true(spTierPathsOverlap("/srv/a/b/c", "/srv/a"));
    g_assert_true(spTierPathsOverlap("/", "/srv"));
    g_assert_false(spTierPathsOverlap("/srv/a", "/srv/ab"));
    g_assert_false(spTierPathsOverlap("/srv/hdd/templates", "/srv/ssd/lab"));
}


static void
testValidatePaths(void)
{
    g_autoptr(GError) error = NULL;

    g_assert_true(spTierLayoutValidatePaths("/srv/hdd/t", "/srv/ssd/lab", NULL));

    g_assert_false(spTierLayoutValidatePaths("relative", "/srv/ssd", &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(error->message, "absolute"));
    g_clear_error(&error);

    g_assert_false(spTierLayoutValidatePaths("/srv/hdd", "/srv/hdd/../ssd", &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_clear_error(&error);

    g_assert_false(spTierLayoutValidatePaths("/srv/x", "/srv/x/instances", &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(error->message, "neither inside the other"));
    g_clear_error(&error);

    g_assert_false(spTierLayoutValidatePaths(NULL, "/srv/x", &error));
    g_assert_nonnull(strstr(error->message, "missing primary"));
}


static void
testCheckGood(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(GError) error = NULL;

    g_assert_true(spTierLayoutCheck(f->primary, f->secondary, &error));
    g_assert_no_error(error);
}


static void
testCheckMissing(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *missing = g_build_filename(f->root, "nope", NULL);

    assertCheckFails(missing, f->secondary, SP_ERROR_TIER_MISSING,
                     "primary tier directory '");
    assertCheckFails(f->primary, missing, SP_ERROR_TIER_MISSING,
                     "' does not exist; virsh pool-build creates it");
}


static void
testCheckNotDirectory(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *file = g_build_filename(f->root, "file", NULL);

    g_assert_true(g_file_set_contents(file, "x", 1, NULL));
    assertCheckFails(f->primary, file, SP_ERROR_INVALID_ARG,
                     "is not a directory");
}


static void
testCheckSymlinkAlias(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *alias = g_build_filename(f->root, "alias", NULL);
    g_autofree char *inner = g_build_filename(f->primary, "inner", NULL);
    g_autofree char *inner_alias = g_build_filename(f->root, "inner-alias", NULL);

    g_assert_cmpint(symlink(f->primary, alias), ==, 0);
    assertCheckFails(f->primary, alias, SP_ERROR_INVALID_ARG, "overlap");

    g_assert_cmpint(g_mkdir(inner, 0755), ==, 0);
    g_assert_cmpint(symlink(inner, inner_alias), ==, 0);
    assertCheckFails(f->primary, inner_alias, SP_ERROR_INVALID_ARG, "overlap");
}


static void
testCheckSecondaryNotWritable(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    if (geteuid() == 0) {
        /* root passes access(W_OK) on a mode 0555 directory; the
         * integration suite covers a read-only filesystem instead */
        g_test_skip("permission bits do not restrict root");
        return;
    }
    g_assert_cmpint(g_chmod(f->secondary, 0555), ==, 0);
    assertCheckFails(f->primary, f->secondary, SP_ERROR_IO, "not writable");
}


static void
testUsage(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    SpTierUsage usage = { 0 };
    g_autoptr(GError) error = NULL;

    g_assert_true(spTierUsageGet(f->secondary, &usage, &error));
    g_assert_cmpuint(usage.capacity, >, 0);
    g_assert_cmpuint(usage.available, <=, usage.capacity);
    g_assert_cmpuint(usage.allocation, <=, usage.capacity);

    g_assert_false(spTierUsageGet("/nonexistent/stormpool", &usage, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_NOT_FOUND);
    g_assert_cmpint(spErrorErrno(error), ==, ENOENT);
    g_assert_cmpstr(spErrorWhat(error), ==, "cannot statvfs '/nonexistent/stormpool'");
}


#define ADD(path, func) \
    g_test_add(path, Fixture, NULL, fixtureSetUp, func, fixtureTearDown)

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tier-layout/overlap", testOverlap);
    g_test_add_func("/tier-layout/validate-paths", testValidatePaths);
    ADD("/tier-layout/check/good", testCheckGood);
    ADD("/tier-layout/check/missing", testCheckMissing);
    ADD("/tier-layout/check/not-directory", testCheckNotDirectory);
    ADD("/tier-layout/check/symlink-alias", testCheckSymlinkAlias);
    ADD("/tier-layout/check/secondary-not-writable", testCheckSecondaryNotWritable);
    ADD("/tier-layout/usage", testUsage);
    return g_test_run();
}
