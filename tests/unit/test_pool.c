/*
 * test_pool.c: the SpPool object: tiers, volumes, replicas, uploads,
 * stamps and refresh, on two directories of a temporary file system
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool/pool_private.h"
#include "stormpool/error.h"
#include "image/image_header.h"
#include "replica/template_replica.h"
#include "util/atomic_file.h"
#include "test_helpers.h"

#define MiB (1024 * 1024)

typedef SpTestPoolFixture Fixture;


static char *
volumeNames(GPtrArray *volumes)
{
    g_autoptr(GString) names = g_string_new(NULL);
    guint i;

    for (i = 0; i < volumes->len; i++) {
        SpVolume *v = g_ptr_array_index(volumes, i);

        g_string_append_printf(names, "%s%s:%s", i ? " " : "",
                               spTierName(v->tier), v->name);
    }
    return g_strdup(names->str);
}


static void
testPaths(void)
{
    g_autoptr(SpPool) pool = spPoolNew("/srv//hdd/", "/srv/ssd//lab", SP_REPLICA_COPY, FALSE);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *instance = spPoolVolumePath(pool, "i.qcow2", TRUE);
    g_autofree char *replica = g_strdup("/srv/ssd/lab/.stormpool-replicas/t.qcow2/0123456789abcdef");
    g_autofree char *name = NULL;

    g_assert_cmpstr(spPoolPrimary(pool), ==, "/srv/hdd");
    g_assert_cmpstr(spPoolSecondary(pool), ==, "/srv/ssd/lab");
    g_assert_cmpstr(template, ==, "/srv/hdd/t.qcow2");
    g_assert_cmpstr(instance, ==, "/srv/ssd/lab/i.qcow2");
    g_assert_true(spPoolIsInstance(pool, instance));
    g_assert_false(spPoolIsInstance(pool, template));
    name = spPoolBackingTemplateName(pool, template);
    g_assert_cmpstr(name, ==, "t.qcow2");
    g_clear_pointer(&name, g_free);
    name = spPoolBackingTemplateName(pool, replica);
    g_assert_cmpstr(name, ==, "t.qcow2");
    g_clear_pointer(&name, g_free);
    g_assert_null(spPoolBackingTemplateName(pool, "/srv/ssd/lab/i.qcow2"));
    g_assert_null(spPoolReplicaTemplateName(pool, template));
}


static void
testStartMissingTier(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *missing = g_build_filename(f->root, "nope", NULL);
    g_autoptr(SpPool) pool = spPoolNew(missing, f->secondary, SP_REPLICA_AUTO, FALSE);
    g_autofree char *expected = g_strdup_printf("primary tier directory '%s' does not exist; "
                                                "virsh pool-build creates it", missing);
    g_autoptr(GError) err = NULL;

    g_assert_false(spPoolTiersExist(pool));
    g_assert_false(spPoolStart(pool, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_TIER_MISSING);
    g_assert_cmpstr(err->message, ==, expected);
    g_assert_cmpint(spErrorErrno(err), ==, 0);
}


static void
testPolicy(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) automatic = spTestPoolNew(f, SP_REPLICA_AUTO);
    g_autoptr(SpPool) none = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autoptr(GError) err = NULL;
    g_autofree char *template = NULL;
    g_autofree char *backing = NULL;
    g_autofree char *name = NULL;
    SpReplicaPolicy policy;

    /* both tiers on one file system: 'auto' hard-links */
    g_assert_true(spPoolReplicaPolicy(automatic, &policy, &err));
    g_assert_cmpint(policy, ==, SP_REPLICA_LINK);
    spTestCreateTemplate(none, "t.qcow2", 4 * MiB);
    template = spPoolVolumePath(none, "t.qcow2", FALSE);
    backing = spPoolInstanceBacking(none, template, &err);
    g_assert_cmpstr(backing, ==, template);
    g_clear_pointer(&backing, g_free);
    backing = spPoolInstanceBacking(automatic, template, &err);
    g_assert_true(g_str_has_prefix(backing, f->secondary));
    name = spPoolReplicaTemplateName(automatic, backing);
    g_assert_cmpstr(name, ==, "t.qcow2");
}


static void
testNameFree(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_COPY);
    g_autoptr(GError) err = NULL;
    g_autofree char *expected = g_strdup_printf("a file named 't.qcow2' already exists in the "
                                                "primary tier '%s'", f->primary);

    g_assert_true(spPoolCheckNameFree(pool, "t.qcow2", &err));
    spTestCreateTemplate(pool, "t.qcow2", MiB);
    g_assert_false(spPoolCheckNameFree(pool, "t.qcow2", &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_EXISTS);
    g_assert_cmpstr(err->message, ==, expected);
}


/* An instance backs onto a copy replica made on demand; refresh lists the
 * volumes and counts the replica's dependents; deleting the instance
 * removes the replica nothing uses any more. */
static void
testInstanceReplica(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_COPY);
    g_autoptr(GPtrArray) volumes = NULL;
    g_autoptr(GPtrArray) lines = NULL;
    g_autofree char *names = NULL;
    g_autofree char *replica = NULL;
    g_autofree char *instance = spPoolVolumePath(pool, "i.qcow2", TRUE);
    g_autofree char *want = NULL;
    g_autoptr(GError) err = NULL;
    g_auto(SpImageInfo) info = { 0 };

    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    replica = spTestCreateInstance(pool, "i.qcow2", "t.qcow2");
    g_assert_true(g_file_test(replica, G_FILE_TEST_IS_REGULAR));
    g_assert_true(spImageInfoRead(instance, &info, &err));
    g_assert_cmpstr(info.backing_file, ==, replica);

    volumes = spTestRefresh(pool);
    names = volumeNames(volumes);
    g_assert_cmpstr(names, ==, "primary:t.qcow2 secondary:i.qcow2");
    lines = spPoolFormatXml(pool);
    want = g_strdup_printf("  <stormpool:replica template='t.qcow2' path='%s' dependents='1'",
                           replica);
    g_assert_cmpuint(lines->len, ==, 16);
    g_assert_true(g_str_has_prefix(g_ptr_array_index(lines, 14), want));
    /* the replica new instances get: a transient disk on t.qcow2 reads it */
    g_assert_true(g_str_has_suffix(g_ptr_array_index(lines, 14),
                                   " current='yes' format='qcow2'/>"));

    g_assert_true(spPoolDeleteVolume(pool, "i.qcow2", instance, replica, &err));
    g_assert_no_error(err);
    g_assert_false(g_file_test(replica, G_FILE_TEST_EXISTS));
    g_assert_nonnull(strstr(f->log->str, "removed replica '"));
}


/* prepare='eager': the replica made in the background is listed in
 * pool-dumpxml as current once made, before any later refresh (libvirt
 * reads a template through it for a transient disk on the template). */
static void
testEagerReplicaListed(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spPoolNew(f->primary, f->secondary, SP_REPLICA_COPY, TRUE);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *replica = NULL;
    g_autoptr(GPtrArray) lines = NULL;
    g_autoptr(GError) err = NULL;
    guint i;

    g_assert_true(spPoolStart(pool, &err));
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    g_ptr_array_unref(spTestRefresh(pool));
    replica = spPoolCurrentReplica(pool, template, &err);
    g_assert_no_error(err);
    g_assert_true(g_file_test(replica, G_FILE_TEST_IS_REGULAR));
    lines = spPoolFormatXml(pool);
    for (i = 0; i < lines->len; i++) {
        const char *line = g_ptr_array_index(lines, i);

        if (strstr(line, replica)) {
            g_assert_true(g_str_has_suffix(line, " current='yes' format='qcow2'/>"));
            return;
        }
    }
    g_assert_not_reached();
}


static void
testDependents(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *backing = NULL;
    g_autoptr(GError) err = NULL;
    gboolean wipe_here = TRUE;

    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    backing = spTestCreateInstance(pool, "b.qcow2", "t.qcow2");
    g_free(spTestCreateInstance(pool, "a.qcow2", "t.qcow2"));
    g_assert_false(spPoolDeleteVolume(pool, "t.qcow2", template, NULL, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    g_assert_cmpstr(err->message, ==,
                    "cannot delete template 't.qcow2': 2 instance(s) depend on it: "
                    "a.qcow2, b.qcow2");
    g_clear_error(&err);
    g_assert_false(spPoolResizeVolume(pool, "t.qcow2", template, SP_IMAGE_FORMAT_QCOW2,
                                      MiB, 8 * MiB, &err));
    g_assert_cmpstr(err->message, ==,
                    "cannot resize template 't.qcow2': 2 instance(s) depend on it: "
                    "a.qcow2, b.qcow2");
    g_clear_error(&err);
    g_assert_false(spPoolWipeVolume(pool, "t.qcow2", template, TRUE, &wipe_here, &err));
    g_assert_false(wipe_here);
    g_assert_true(g_str_has_prefix(err->message, "cannot wipe template 't.qcow2': 2"));
    g_assert_true(g_file_test(template, G_FILE_TEST_EXISTS));
}


static void
testUploads(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_COPY);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *instance = spPoolVolumePath(pool, "i.qcow2", TRUE);
    g_autoptr(GError) err = NULL;
    g_autofree char *target = NULL;
    g_autofree char *again = NULL;

    spTestCreateTemplate(pool, "t.qcow2", MiB);
    g_assert_true(spPoolCheckNotUploading(pool, "t.qcow2", template, &err));
    /* without dependents the stream goes into the template itself */
    g_assert_true(spPoolUploadBegin(pool, "t.qcow2", template, 0, &target, &err));
    g_assert_cmpstr(target, ==, template);
    g_assert_false(spPoolCheckNotUploading(pool, "t.qcow2", template, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    g_assert_cmpstr(err->message, ==, "template 't.qcow2' is still being written by "
                    "vol-upload; try again when the upload has finished");
    g_clear_error(&err);
    /* a stream that never opened ends the upload at once */
    spPoolUploadOpened(pool, template, FALSE);
    g_assert_true(spPoolCheckNotUploading(pool, "t.qcow2", template, &err));
    /* an open stream lasts as long as this process writes the file */
    g_assert_true(spPoolUploadBegin(pool, "t.qcow2", template, 0, &again, &err));
    spPoolUploadOpened(pool, again, TRUE);
    g_assert_true(spPoolCheckNotUploading(pool, "t.qcow2", template, &err));
    g_assert_false(spPoolUploadBegin(pool, "i.qcow2", instance, 0, &target, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_INVALID_STATE);
}


/* A template changed behind the pool's back names the instances at risk
 * once; a change by the pool itself (resize) raises no alarm. */
static void
testStamps(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autoptr(GError) err = NULL;
    g_autofree char *want = g_strdup_printf("error: template '%s' changed behind libvirt's "
                                            "back while 2 instance(s) depend on it directly; "
                                            "their data is at risk: a.qcow2, b.qcow2\n",
                                            template);
    struct timespec times[2] = { { 0, UTIME_OMIT }, { 12345, 0 } };

    spTestCreateTemplate(pool, "t.qcow2", MiB);
    g_free(spTestCreateInstance(pool, "b.qcow2", "t.qcow2"));
    g_free(spTestCreateInstance(pool, "a.qcow2", "t.qcow2"));
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_cmpstr(f->log->str, ==, "");

    g_assert_cmpint(utimensat(AT_FDCWD, template, times, 0), ==, 0);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_cmpstr(f->log->str, ==, want);
    g_string_truncate(f->log, 0);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_cmpstr(f->log->str, ==, "");

    /* the pool's own resize forgets the stamp (the dependents check is
     * what refuses it here) */
    spPoolForgetTemplateStamp(pool, template);
    times[1].tv_sec = 23456;
    g_assert_cmpint(utimensat(AT_FDCWD, template, times, 0), ==, 0);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_cmpstr(f->log->str, ==, "");
}


/* An image backing onto a file outside the tiers is none of the pool's
 * business; a temporary file of an interrupted creation goes. */
static void
testRefreshSkips(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_COPY);
    g_autofree char *outside = g_build_filename(f->root, "outside.img", NULL);
    g_autofree char *stray = g_build_filename(f->secondary, "stray.qcow2", NULL);
    g_autofree char *tmp = g_build_filename(f->primary, ".stormpool-tmp-t.qcow2-Ab12Cd", NULL);
    g_autofree char *want = g_strdup_printf("warning: skipping '%s': not a volume of this "
                                            "pool, its backing file is outside the pool's "
                                            "tiers\n", stray);
    const char *overlay[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", outside,
                              "-F", "raw", stray, NULL };
    g_autoptr(GPtrArray) volumes = NULL;
    g_autofree char *names = NULL;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img is not installed");
        return;
    }
    spTestCreateTemplate(pool, "t.qcow2", MiB);
    g_assert_true(g_file_set_contents(outside, "raw data", -1, NULL));
    g_assert_cmpint(spTestRun(overlay, NULL, NULL), ==, 0);
    g_assert_true(g_file_set_contents(tmp, "", -1, NULL));
    volumes = spTestRefresh(pool);
    names = volumeNames(volumes);
    g_assert_cmpstr(names, ==, "primary:t.qcow2");
    g_assert_nonnull(strstr(f->log->str, want));
    g_assert_nonnull(strstr(f->log->str, "left behind by an interrupted volume creation"));
    g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
}


/* In a primary tier shared by several hosts, a temporary file may be a
 * volume another host is writing: its writer's lock keeps it from this
 * pool's refresh, and the volume is committed whole afterwards. */
static void
testRefreshKeepsTmpBeingWritten(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *path = g_build_filename(f->primary, "new.img", NULL);
    g_autoptr(SpAtomicFile) file = NULL;
    g_autoptr(GError) err = NULL;

    file = spAtomicFileBegin(path, 0644, &err);
    g_assert_no_error(err);
    g_assert_cmpint(write(spAtomicFileFd(file), "data", 4), ==, 4);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_true(g_file_test(spAtomicFileTmpPath(file), G_FILE_TEST_EXISTS));
    g_assert_null(strstr(f->log->str, "left behind"));
    g_assert_true(spAtomicFileCommit(file, FALSE, &err));
    g_assert_no_error(err);
    g_assert_true(g_file_test(path, G_FILE_TEST_IS_REGULAR));
}


/* A layer the pool did not make (an external snapshot, a blockcopy
 * destination) backs onto an instance: the instance is neither deleted
 * nor reset under it, and every byte stays. */
static void
testInstanceLayers(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *instance = spPoolVolumePath(pool, "pc01.qcow2", TRUE);
    g_autofree char *layer = g_build_filename(f->secondary, "pc01.s1", NULL);
    g_autofree char *backing = NULL;
    g_autofree char *want = NULL;
    g_autoptr(GError) err = NULL;
    const char *snapshot[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", instance,
                               "-F", "qcow2", layer, NULL };
    gboolean wipe_here = TRUE;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img is not installed");
        return;
    }
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    backing = spTestCreateInstance(pool, "pc01.qcow2", "t.qcow2");
    g_assert_cmpint(spTestRun(snapshot, NULL, NULL), ==, 0);
    want = g_strdup_printf("cannot delete instance 'pc01.qcow2': 1 layer(s) in '%s' back "
                           "onto it: pc01.s1", f->secondary);
    g_assert_false(spPoolDeleteVolume(pool, "pc01.qcow2", instance, backing, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    g_assert_cmpstr(err->message, ==, want);
    g_clear_error(&err);
    g_assert_false(spPoolWipeVolume(pool, "pc01.qcow2", instance, TRUE, &wipe_here, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    g_assert_true(g_str_has_prefix(err->message, "cannot wipe instance 'pc01.qcow2': 1 layer"));
    g_clear_error(&err);
    g_assert_true(g_file_test(instance, G_FILE_TEST_IS_REGULAR));
    /* the layer committed and gone, the instance is free again */
    g_assert_cmpint(unlink(layer), ==, 0);
    g_assert_true(spPoolDeleteVolume(pool, "pc01.qcow2", instance, backing, &err));
    g_assert_no_error(err);
}


/* Wiping an instance gives it a new, empty overlay on the same backing. */
static void
testResetInstance(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_COPY);
    g_autofree char *instance = spPoolVolumePath(pool, "i.qcow2", TRUE);
    g_autofree char *backing = NULL;
    g_autoptr(GError) err = NULL;
    g_auto(SpImageInfo) before = { 0 };
    g_auto(SpImageInfo) after = { 0 };
    gboolean wipe_here = TRUE;
    struct stat sb;

    spTestCreateTemplate(pool, "t.qcow2", MiB);
    backing = spTestCreateInstance(pool, "i.qcow2", "t.qcow2");
    g_assert_true(spImageInfoRead(instance, &before, &err));
    g_assert_cmpint(chmod(instance, 0640), ==, 0);
    g_assert_true(spPoolWipeVolume(pool, "i.qcow2", instance, TRUE, &wipe_here, &err));
    g_assert_no_error(err);
    g_assert_false(wipe_here);
    g_assert_true(spImageInfoRead(instance, &after, &err));
    g_assert_cmpstr(after.backing_file, ==, backing);
    g_assert_cmpuint(after.virtual_size, ==, before.virtual_size);
    g_assert_cmpint(stat(instance, &sb), ==, 0);
    g_assert_cmpint(sb.st_mode & 0777, ==, 0640);
}


typedef struct {
    SpPool *pool;
    const char *template_path;
    const char *replica_path;
    gboolean ok;
} EnsureCall;


static gpointer
ensureThread(gpointer data)
{
    EnsureCall *call = data;
    g_autoptr(GError) err = NULL;

    call->ok = spPoolReplicaEnsure(call->pool, call->template_path, call->replica_path, &err);
    g_assert_no_error(err);
    return NULL;
}


/* Concurrent builds onto one replica wait for the one making it; each is
 * a user, which keeps the replica from garbage collection until released. */
static void
testReplicaRegistry(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_COPY);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *replica = NULL;
    g_autoptr(GError) err = NULL;
    EnsureCall calls[4];
    GThread *threads[G_N_ELEMENTS(calls)];
    const char *made;
    size_t i;

    spTestCreateTemplate(pool, "t.qcow2", 64 * MiB);
    replica = spPoolInstanceBacking(pool, template, &err);
    for (i = 0; i < G_N_ELEMENTS(calls); i++) {
        calls[i] = (EnsureCall) { pool, template, replica, FALSE };
        threads[i] = g_thread_new("ensure", ensureThread, &calls[i]);
    }
    for (i = 0; i < G_N_ELEMENTS(calls); i++) {
        g_thread_join(threads[i]);
        g_assert_true(calls[i].ok);
    }
    made = strstr(f->log->str, "making copy replica");
    g_assert_nonnull(made);
    g_assert_null(strstr(made + 1, "making copy replica"));
    g_assert_nonnull(strstr(f->log->str, "made in"));
    g_assert_false(spPoolReplicaUnused(pool, replica));
    for (i = 0; i < G_N_ELEMENTS(calls) - 1; i++)
        spPoolReplicaRelease(pool, replica);
    g_assert_false(spPoolReplicaUnused(pool, replica));
    spPoolReplicaRelease(pool, replica);
    g_assert_true(spPoolReplicaUnused(pool, replica));
    /* nothing is being made: a stop returns at once */
    spPoolReplicasStop(pool);
    g_assert_false(spPoolReplicaDirBusy(pool, f->secondary));
}


static void
testChainAllocation(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *instance = spPoolVolumePath(pool, "i.qcow2", TRUE);
    struct stat st, si;

    spTestCreateTemplate(pool, "t.qcow2", MiB);
    g_free(spTestCreateInstance(pool, "i.qcow2", "t.qcow2"));
    g_assert_cmpint(stat(template, &st), ==, 0);
    g_assert_cmpint(stat(instance, &si), ==, 0);
    g_assert_cmpuint(spPoolChainAllocation(template), ==, (guint64) st.st_blocks * 512);
    g_assert_cmpuint(spPoolChainAllocation(instance), ==,
                     (guint64) (st.st_blocks + si.st_blocks) * 512);
    g_assert_cmpuint(spPoolChainAllocation("/nonexistent"), ==, 0);
}


static void
testErrno(void)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GError) copy = NULL;
    g_autofree char *want = g_strdup_printf("cannot open 'x': %s", g_strerror(EACCES));

    g_assert_false(spErrorSetErrno(&err, EACCES, "cannot open '%s'", "x"));
    g_assert_error(err, SP_ERROR, SP_ERROR_IO);
    g_assert_cmpstr(err->message, ==, want);
    g_assert_cmpstr(spErrorWhat(err), ==, "cannot open 'x'");
    g_assert_cmpint(spErrorErrno(err), ==, EACCES);
    copy = g_error_copy(err);
    g_assert_cmpint(spErrorErrno(copy), ==, EACCES);
    g_assert_cmpstr(spErrorWhat(copy), ==, "cannot open 'x'");
    g_clear_error(&err);
    spErrorSetErrno(&err, ENOENT, "gone");
    g_assert_error(err, SP_ERROR, SP_ERROR_NOT_FOUND);
    g_clear_error(&err);
    spErrorSetErrno(&err, ENOSPC, "full");
    g_assert_error(err, SP_ERROR, SP_ERROR_NO_SPACE);
    g_clear_error(&err);
    g_set_error_literal(&err, SP_ERROR, SP_ERROR_IN_USE, "busy");
    g_assert_cmpint(spErrorErrno(err), ==, 0);
    g_assert_cmpstr(spErrorWhat(err), ==, "busy");
    g_assert_false(spErrorSetErrno(NULL, EIO, "nobody asks"));
}


#define ADD(name, func) \
    g_test_add("/pool/" name, Fixture, NULL, spTestPoolSetUp, func, spTestPoolTearDown)

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* The pool logs warnings on purpose; the tests read them. */
    g_log_set_always_fatal(G_LOG_FATAL_MASK);
    g_test_add_func("/pool/errno", testErrno);
    g_test_add_func("/pool/paths", testPaths);
    ADD("start-missing-tier", testStartMissingTier);
    ADD("policy", testPolicy);
    ADD("name-free", testNameFree);
    ADD("instance-replica", testInstanceReplica);
    ADD("eager-replica-listed", testEagerReplicaListed);
    ADD("dependents", testDependents);
    ADD("instance-layers", testInstanceLayers);
    ADD("uploads", testUploads);
    ADD("stamps", testStamps);
    ADD("refresh-skips", testRefreshSkips);
    ADD("refresh-keeps-tmp-being-written", testRefreshKeepsTmpBeingWritten);
    ADD("reset-instance", testResetInstance);
    ADD("replica-registry", testReplicaRegistry);
    ADD("chain-allocation", testChainAllocation);
    return g_test_run();
}
