/*
 * test_template_replica.c: naming, listing and making template replicas
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sys/statvfs.h>

#include "stormpool/error.h"
#include "replica/template_replica.h"
#include "test_helpers.h"

#define ID "0123456789abcdef"

static void
testTemplateName(void)
{
    g_autofree char *good = spReplicaTemplateName("/ssd", "/ssd/.stormpool-replicas/win10.qcow2/" ID);
    g_autofree char *dots = spReplicaTemplateName("/ssd", "/ssd/.stormpool-replicas/../" ID);
    g_autofree char *hidden = spReplicaTemplateName("/ssd", "/ssd/.stormpool-replicas/.x/" ID);
    g_autofree char *short_id = spReplicaTemplateName("/ssd", "/ssd/.stormpool-replicas/t/0123");
    g_autofree char *upper = spReplicaTemplateName("/ssd", "/ssd/.stormpool-replicas/t/0123456789ABCDEF");
    g_autofree char *other = spReplicaTemplateName("/ssd", "/hdd/.stormpool-replicas/t/" ID);
    g_autofree char *deep = spReplicaTemplateName("/ssd", "/ssd/.stormpool-replicas/t/x/" ID);

    g_assert_cmpstr(good, ==, "win10.qcow2");
    g_assert_null(dots);
    g_assert_null(hidden);
    g_assert_null(short_id);
    g_assert_null(upper);
    g_assert_null(other);
    g_assert_null(deep);
}


static void
testPolicyNames(void)
{
    SpReplicaPolicy policy;

    g_assert_true(spReplicaPolicyParse("copy", &policy));
    g_assert_cmpint(policy, ==, SP_REPLICA_COPY);
    g_assert_cmpstr(spReplicaPolicyName(SP_REPLICA_LINK), ==, "link");
    g_assert_false(spReplicaPolicyParse("mirror", &policy));
    g_assert_false(spReplicaPolicyParse(NULL, &policy));
}


/* Only what the pool could have made is listed, and symbolic links are
 * never followed: garbage collection removes what is listed. */
static void
testListIgnoresForeignFiles(void)
{
    g_autofree char *ssd = spTestTempDir();
    g_autofree char *outside = spTestTempDir();
    g_autofree char *root = g_build_filename(ssd, SP_REPLICA_DIR, NULL);
    g_autofree char *tdir = g_build_filename(root, "t.qcow2", NULL);
    g_autofree char *replica = g_build_filename(tdir, ID, NULL);
    g_autofree char *victim = g_build_filename(outside, ID, NULL);
    g_autofree char *link = g_build_filename(root, "evil", NULL);
    g_autofree char *junk = g_build_filename(tdir, "notes.txt", NULL);
    g_autoptr(GPtrArray) list = NULL;
    SpReplicaInfo *info;

    g_assert_cmpint(g_mkdir_with_parents(tdir, 0711), ==, 0);
    g_assert_true(g_file_set_contents(replica, "replica", -1, NULL));
    g_assert_true(g_file_set_contents(junk, "junk", -1, NULL));
    g_assert_true(g_file_set_contents(victim, "precious", -1, NULL));
    g_assert_cmpint(symlink(outside, link), ==, 0);

    list = spReplicaList(ssd, NULL);
    g_assert_nonnull(list);
    g_assert_cmpuint(list->len, ==, 1);
    info = g_ptr_array_index(list, 0);
    g_assert_cmpstr(info->path, ==, replica);
    g_assert_cmpstr(info->template_name, ==, "t.qcow2");
    g_assert_cmpstr(info->identity, ==, ID);

    g_assert_true(spReplicaRemove(replica, NULL));
    g_assert_true(g_file_test(victim, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(replica, G_FILE_TEST_EXISTS));
    spTestTempDirFree(g_steal_pointer(&ssd));
    spTestTempDirFree(g_steal_pointer(&outside));
}


static void
testCreateCopyAndLink(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *template = g_build_filename(dir, "t.img", NULL);
    g_autofree char *copy = g_build_filename(dir, SP_REPLICA_DIR, "t.img", "0000000000000001", NULL);
    g_autofree char *link = g_build_filename(dir, SP_REPLICA_DIR, "t.img", "0000000000000002", NULL);
    g_autofree char *data = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *identity = NULL;
    struct stat st, sc, sl, sd;

    g_assert_true(g_file_set_contents(template, "template data", -1, NULL));
    identity = spReplicaIdentity(template, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(strlen(identity), ==, 16);

    g_assert_true(spReplicaCreate(template, copy, FALSE, 0, NULL, NULL, &error));
    g_assert_no_error(error);
    g_assert_true(spReplicaCreate(template, link, TRUE, 0, NULL, NULL, &error));
    g_assert_no_error(error);
    g_assert_true(g_file_get_contents(copy, &data, NULL, NULL));
    g_assert_cmpstr(data, ==, "template data");
    g_assert_cmpint(stat(template, &st), ==, 0);
    g_assert_cmpint(stat(copy, &sc), ==, 0);
    g_assert_cmpint(stat(link, &sl), ==, 0);
    g_assert_cmpuint(sc.st_ino, !=, st.st_ino);
    g_assert_cmpuint(sl.st_ino, ==, st.st_ino);
    /* a QEMU of another user must be able to reach the replica */
    {
        g_autofree char *parent = g_path_get_dirname(copy);
        g_assert_cmpint(stat(parent, &sd), ==, 0);
    }
    g_assert_cmpint(sd.st_mode & 0711, ==, 0711);
    g_assert_cmpint(sc.st_mode & 07777, ==, SP_REPLICA_MODE);

    /* a second replica of the same name is never overwritten */
    g_assert_false(spReplicaCreate(template, link, TRUE, 0, NULL, NULL, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_EXISTS);
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* The room check on the test's own file system, whatever its size: what
 * is free decides, minus what other copies still write, minus 5 %. */
static void
testCheckRoom(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *replica = g_build_filename(dir, "0123456789abcdef", NULL);
    g_autoptr(GError) error = NULL;
    struct statvfs vfs;
    guint64 avail, keep;

    g_assert_cmpint(statvfs(dir, &vfs), ==, 0);
    avail = (guint64) vfs.f_bavail * vfs.f_frsize;
    keep = (guint64) vfs.f_blocks * vfs.f_frsize / 100 * SP_REPLICA_KEEP_FREE_PERCENT;
    if (avail < keep + 2 * 1024 * 1024) {
        g_test_skip("the test file system is nearly full");
        return;
    }
    g_assert_true(spReplicaCheckRoom(replica, 1024 * 1024, 0, "t.qcow2", &error));
    g_assert_no_error(error);
    /* fits with nothing else under way, not with another copy's share */
    g_assert_true(spReplicaCheckRoom(replica, avail - keep - 1024 * 1024, 0, "t.qcow2", &error));
    g_assert_false(spReplicaCheckRoom(replica, avail - keep - 1024 * 1024, 2 * 1024 * 1024,
                                      "t.qcow2", &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_NO_SPACE);
    g_assert_nonnull(strstr(error->message, "not enough space for a replica of 't.qcow2'"));
    g_assert_nonnull(strstr(error->message, "still to be written by other replica copies"));
    /* sizes as the RAM tier's messages give them: "2.0 MiB", plain ASCII */
    g_assert_nonnull(strstr(error->message, "(2.0 MiB of it still to be written"));
    g_assert_true(g_str_is_ascii(error->message));
    g_clear_error(&error);
    /* the 5 % kept free */
    g_assert_false(spReplicaCheckRoom(replica, avail - keep / 2, 0, "t.qcow2", &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_NO_SPACE);
    spTestTempDirFree(g_steal_pointer(&dir));
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/template-replica/template-name", testTemplateName);
    g_test_add_func("/template-replica/policy-names", testPolicyNames);
    g_test_add_func("/template-replica/list-ignores-foreign-files", testListIgnoresForeignFiles);
    g_test_add_func("/template-replica/create-copy-and-link", testCreateCopyAndLink);
    g_test_add_func("/template-replica/check-room", testCheckRoom);
    return g_test_run();
}
