/*
 * test_own_writers.c: this process's descriptors open for writing
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <fcntl.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "fs/own_writers.h"
#include "test_helpers.h"


static gboolean
writes(const char *path)
{
    g_autoptr(GError) error = NULL;
    gboolean writing = TRUE;

    g_assert_true(spProcessWritesFile(path, &writing, &error));
    g_assert_no_error(error);
    return writing;
}


static void
testDescriptors(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "template.img", NULL);
    g_autofree char *alias = g_build_filename(dir, "alias.img", NULL);
    g_autofree char *other = g_build_filename(dir, "other.img", NULL);
    int ro, wo, rw, elsewhere;

    g_assert_true(g_file_set_contents(path, "data", -1, NULL));
    g_assert_true(g_file_set_contents(other, "data", -1, NULL));
    g_assert_false(writes(path));

    ro = open(path, O_RDONLY);
    g_assert_false(writes(path));
    elsewhere = open(other, O_WRONLY);
    g_assert_false(writes(path));

    wo = open(path, O_WRONLY);
    g_assert_true(writes(path));
    /* the same inode under another name */
    g_assert_cmpint(link(path, alias), ==, 0);
    g_assert_true(writes(alias));
    close(wo);
    g_assert_false(writes(path));

    rw = open(path, O_RDWR);
    g_assert_true(writes(path));
    close(rw);
    g_assert_false(writes(path));

    close(ro);
    close(elsewhere);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testMissing(void)
{
    g_autoptr(GError) error = NULL;
    gboolean writing;

    g_assert_false(spProcessWritesFile("/nonexistent/stormpool.img", &writing, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_NOT_FOUND);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/own-writers/descriptors", testDescriptors);
    g_test_add_func("/own-writers/missing", testMissing);
    return g_test_run();
}
