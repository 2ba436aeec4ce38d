/*
 * test_template_index.c: finding the instances that depend on a template
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "replica/template_index.h"
#include "test_helpers.h"

typedef struct {
    char *root;
    char *primary;
    char *secondary;
    char *template;
} Fixture;


static void
qemuImg(const char *backing, const char *format, const char *path)
{
    const char *with_backing[] = { "qemu-img", "create", "-q", "-f", "qcow2",
                                   "-b", backing, "-F", format, path, NULL };
    const char *plain[] = { "qemu-img", "create", "-q", "-f", "qcow2", path, "1M", NULL };

    g_assert_cmpint(spTestRun(backing ? with_backing : plain, NULL, NULL), ==, 0);
}


static void
fixtureSetUp(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    f->root = spTestTempDir();
    f->primary = g_build_filename(f->root, "hdd", NULL);
    f->secondary = g_build_filename(f->root, "ssd", NULL);
    f->template = g_build_filename(f->primary, "win10.qcow2", NULL);
    g_assert_cmpint(g_mkdir(f->primary, 0755), ==, 0);
    g_assert_cmpint(g_mkdir(f->secondary, 0755), ==, 0);
    if (spTestHaveQemuImg())
        qemuImg(NULL, NULL, f->template);
}


static void
fixtureTearDown(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    spTestTempDirFree(f->root);
    g_free(f->primary);
    g_free(f->secondary);
    g_free(f->template);
}


static char *
instancePath(Fixture *f, const char *name)
{
    return g_build_filename(f->secondary, name, NULL);
}


static char *
joinNames(GPtrArray *names)
{
    g_autoptr(GString) s = g_string_new(NULL);
    guint i;

    for (i = 0; i < names->len; i++)
        g_string_append_printf(s, "%s%s", i ? " " : "", (char *) g_ptr_array_index(names, i));
    return g_string_free(g_steal_pointer(&s), FALSE);
}


static void
testDependents(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) names = NULL;
    g_autofree char *joined = NULL;
    g_autofree char *other = g_build_filename(f->primary, "other.qcow2", NULL);
    g_autofree char *alias = g_build_filename(f->root, "alias", NULL);
    g_autofree char *via_alias = g_build_filename(alias, "win10.qcow2", NULL);
    g_autofree char *pc01 = instancePath(f, "pc01.qcow2");
    g_autofree char *pc02 = instancePath(f, "pc02.qcow2");
    g_autofree char *rel = instancePath(f, "relative.qcow2");
    g_autofree char *aliased = instancePath(f, "aliased.qcow2");
    g_autofree char *foreign = instancePath(f, "foreign.qcow2");
    g_autofree char *hidden = instancePath(f, ".hidden.qcow2");
    g_autofree char *junk = instancePath(f, "junk.img");

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img is needed to make overlays");
        return;
    }
    qemuImg(NULL, NULL, other);
    g_assert_cmpint(symlink(f->primary, alias), ==, 0);

    qemuImg(f->template, "qcow2", pc02);
    qemuImg(f->template, "qcow2", pc01);
    qemuImg("../hdd/win10.qcow2", "qcow2", rel);
    qemuImg(via_alias, "qcow2", aliased);
    qemuImg(other, "qcow2", foreign);
    qemuImg(f->template, "qcow2", hidden);
    g_assert_true(g_file_set_contents(junk, "QFI\xfb garbage", -1, NULL));

    names = spTemplateDependents(f->secondary, f->template, &error);
    g_assert_no_error(error);
    joined = joinNames(names);
    g_assert_cmpstr(joined, ==, "aliased.qcow2 pc01.qcow2 pc02.qcow2 relative.qcow2");

    g_clear_pointer(&names, g_ptr_array_unref);
    names = spTemplateDependents(f->secondary, other, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(names->len, ==, 1);
    g_assert_cmpstr(g_ptr_array_index(names, 0), ==, "foreign.qcow2");
}


static void
testMissingTemplate(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *gone = g_build_filename(f->primary, "gone.qcow2", NULL);
    g_autoptr(GPtrArray) names = spTemplateDependents(f->secondary, gone, &error);

    g_assert_no_error(error);
    g_assert_cmpuint(names->len, ==, 0);
}


static void
testMissingSecondary(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *missing = g_build_filename(f->root, "nope", NULL);
    g_autoptr(GPtrArray) names = NULL;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img is needed to make the template");
        return;
    }
    names = spTemplateDependents(missing, f->template, &error);
    g_assert_null(names);
    g_assert_nonnull(error);
}


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


#define ADD(path, func) \
    g_test_add(path, Fixture, NULL, fixtureSetUp, func, fixtureTearDown)

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    ADD("/template-index/dependents", testDependents);
    ADD("/template-index/missing-template", testMissingTemplate);
    ADD("/template-index/missing-secondary", testMissingSecondary);
    g_test_add_func("/template-index/resolve", testResolve);
    g_test_add_func("/template-index/path-is-in-dir", testPathIsInDir);
    g_test_add_func("/template-index/summary", testSummary);
    return g_test_run();
}
