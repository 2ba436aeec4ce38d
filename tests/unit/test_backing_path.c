/*
 * test_backing_path.c: backing file names resolved and compared, and
 * dependents named (what depends on what: test_pool_chains.c)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "fs/backing_path.h"
#include "test_helpers.h"

static void
testResolve(void)
{
    g_autofree char *abs = spBackingFileResolve("/srv/ssd/pc.qcow2", "/srv/hdd/t.qcow2");
    g_autofree char *rel = spBackingFileResolve("/srv/ssd/pc.qcow2", "../hdd/t.qcow2");
    g_autofree char *plain = spBackingFileResolve("/srv/ssd/pc.qcow2", "t.qcow2");

    g_assert_cmpstr(abs, ==, "/srv/hdd/t.qcow2");
    g_assert_cmpstr(rel, ==, "/srv/ssd/../hdd/t.qcow2");
    g_assert_cmpstr(plain, ==, "/srv/ssd/t.qcow2");
}


static void
testPathIsInDir(void)
{
    g_assert_true(spPathIsInDir("/srv/hdd/t.qcow2", "/srv/hdd"));
    g_assert_true(spPathIsInDir("/srv//hdd/t.qcow2", "/srv/hdd/"));
    g_assert_false(spPathIsInDir("/srv/hdd/sub/t.qcow2", "/srv/hdd"));
    g_assert_false(spPathIsInDir("/srv/hdd2/t.qcow2", "/srv/hdd"));
    g_assert_false(spPathIsInDir("/srv/hdd", "/srv/hdd"));
    g_assert_true(spPathIsInDir("/t.qcow2", "/"));
    g_assert_true(spPathIsInDir("/srv/hdd//t.qcow2/", "//srv/hdd"));
    g_assert_false(spPathIsInDir("srv/hdd/t.qcow2", "/srv/hdd"));
    g_assert_false(spPathIsInDir("/srv/hd/t.qcow2", "/srv/hdd"));
    g_assert_false(spPathIsInDir("/srv", "/srv/hdd"));
}


static void
testSummary(void)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *one = NULL;
    g_autofree char *many = NULL;
    int i;

    g_ptr_array_add(names, g_strdup("pc01"));
    one = spTemplateDependentsSummary(names, 5);
    g_assert_cmpstr(one, ==, "pc01");
    for (i = 2; i <= 8; i++)
        g_ptr_array_add(names, g_strdup_printf("pc%02d", i));
    many = spTemplateDependentsSummary(names, 5);
    g_assert_cmpstr(many, ==, "pc01, pc02, pc03, pc04, pc05 and 3 more");
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/backing-path/resolve", testResolve);
    g_test_add_func("/backing-path/path-is-in-dir", testPathIsInDir);
    g_test_add_func("/backing-path/summary", testSummary);
    return g_test_run();
}
