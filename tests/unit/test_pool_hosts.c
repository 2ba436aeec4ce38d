/*
 * test_pool_hosts.c: pools of several hosts share one primary tier
 * (core/pool/pool_hosts.c): a template any host's instance depends on is
 * protected from every host, also under races
 *
 * Two SpPool objects stand for two hosts: one primary tier, a secondary
 * tier each, different host names. The store's lock is an OFD lock,
 * which binds two open files of one process as it binds two hosts.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool/pool_private.h"
#include "stormpool/error.h"
#include "fs/host_records.h"
#include "test_helpers.h"

#define MiB (1024 * 1024)

typedef struct {
    SpTestPoolFixture base;
    char *secondary_b;
    SpPool *a;
    SpPool *b;
} Fixture;


static SpPool *
hostPool(const char *primary, const char *secondary, const char *host)
{
    SpPool *pool = spPoolNew(primary, secondary, SP_REPLICA_COPY, FALSE);
    g_autoptr(GError) err = NULL;

    spPoolSetHost(pool, host, "");
    g_assert_true(spPoolStart(pool, &err));
    g_assert_no_error(err);
    return pool;
}


static void
setUp(Fixture *f, gconstpointer data)
{
    spTestPoolSetUp(&f->base, data);
    f->secondary_b = g_build_filename(f->base.root, "ssd-b", NULL);
    g_assert_cmpint(mkdir(f->secondary_b, 0755), ==, 0);
    f->a = hostPool(f->base.primary, f->base.secondary, "lab-a");
    f->b = hostPool(f->base.primary, f->secondary_b, "lab-b");
    spTestCreateTemplate(f->a, "t.qcow2", 4 * MiB);
}


static void
tearDown(Fixture *f, gconstpointer data)
{
    spPoolStop(f->a);
    spPoolStop(f->b);
    spPoolWaitIdle(f->a);
    spPoolWaitIdle(f->b);
    g_clear_pointer(&f->a, spPoolUnref);
    g_clear_pointer(&f->b, spPoolUnref);
    g_free(f->secondary_b);
    spTestPoolTearDown(&f->base, data);
}


static gboolean
deleteTemplate(SpPool *pool, GError **error)
{
    g_autofree char *path = spPoolVolumePath(pool, "t.qcow2", FALSE);

    return spPoolDeleteVolume(pool, "t.qcow2", path, NULL, error);
}


static void
deleteInstance(SpPool *pool, const char *name, const char *backing)
{
    g_autofree char *path = spPoolVolumePath(pool, name, TRUE);
    g_autoptr(GError) err = NULL;

    g_assert_true(spPoolDeleteVolume(pool, name, path, backing, &err));
    g_assert_no_error(err);
}


/* An instance on host A keeps host B from deleting, wiping, resizing or
 * uploading into its template; the error names the host and its count.
 * Once A's instance is gone, B may delete the template. */
static void
testInstanceOnOtherHostProtects(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *backing = spTestCreateInstance(f->a, "pc01.qcow2", "t.qcow2");
    g_autofree char *path = spPoolVolumePath(f->b, "t.qcow2", FALSE);
    g_autoptr(GError) err = NULL;
    gboolean here = FALSE;
    const char *tail = "template 't.qcow2': instances of other pools depend on it: lab-a (1)";
    g_autofree char *del = g_strconcat("cannot delete ", tail, NULL);
    g_autofree char *wipe = g_strconcat("cannot wipe ", tail, NULL);
    g_autofree char *grow = g_strconcat("cannot resize ", tail, NULL);
    /* a new instance counts as naming the template's file until its
     * host counts everything again (testVersionWithOtherHostsReplicas) */
    g_autofree char *upload = g_strdup("cannot upload a new version of template 't.qcow2': "
                                       "images of other pools name its file itself "
                                       "(lab-a (1)), which must keep its contents");
    g_autofree char *target = NULL;

    g_assert_false(deleteTemplate(f->b, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    g_assert_cmpstr(err->message, ==, del);
    g_clear_error(&err);
    g_assert_false(spPoolWipeVolume(f->b, "t.qcow2", path, TRUE, &here, &err));
    g_assert_cmpstr(err->message, ==, wipe);
    g_clear_error(&err);
    g_assert_false(spPoolResizeVolume(f->b, "t.qcow2", path, SP_IMAGE_FORMAT_QCOW2,
                                      4 * MiB, 8 * MiB, &err));
    g_assert_cmpstr(err->message, ==, grow);
    g_clear_error(&err);
    g_assert_false(spPoolUploadBegin(f->b, "t.qcow2", path, 0, &target, &err));
    g_assert_cmpstr(err->message, ==, upload);
    g_clear_error(&err);
    g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
    deleteInstance(f->a, "pc01.qcow2", backing);
    g_assert_true(deleteTemplate(f->b, &err));
    g_assert_no_error(err);
}


/* Once host A has counted its instance as reaching the template through
 * a replica, host B may publish a new version: A's instance keeps its
 * replica, and B keeps the old version while A's record counts the
 * template. An instance of A naming the template's file refuses it. */
static void
testVersionWithOtherHostsReplicas(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *backing = spTestCreateInstance(f->a, "pc01.qcow2", "t.qcow2");
    g_autofree char *path = spPoolVolumePath(f->b, "t.qcow2", FALSE);
    g_autofree char *versions = g_build_filename(f->base.primary, ".stormpool-versions",
                                                 "t.qcow2", NULL);
    g_autofree char *target = NULL, *again = NULL;
    g_autofree char *hand = g_build_filename(f->base.secondary, "hand.qcow2", NULL);
    const char *mk[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", path, "-F", "qcow2",
                         hand, NULL };
    g_autoptr(GError) err = NULL;

    if (!spTestHaveQemuImg())
        return;
    g_ptr_array_unref(spTestRefresh(f->a));
    g_assert_true(spPoolUploadBegin(f->b, "t.qcow2", path, 0, &target, &err));
    g_assert_no_error(err);
    g_assert_true(g_str_has_prefix(target, versions));
    {
        /* the stream writes the file in place: the upload's lock stays */
        g_autofree char *image = g_build_filename(f->base.root, "v2.qcow2", NULL);
        const char *v2[] = { "qemu-img", "create", "-q", "-f", "qcow2", image, "8M", NULL };
        g_autofree char *bytes = NULL;
        gsize len = 0;

        g_assert_cmpint(spTestRun(v2, NULL, NULL), ==, 0);
        g_assert_true(g_file_get_contents(image, &bytes, &len, NULL));
        spTestWriteAt(target, 0, bytes, len);
    }
    spPoolUploadOpened(f->b, target, TRUE);
    g_ptr_array_unref(spTestRefresh(f->b));
    /* published; A's instance keeps its replica, B keeps the version */
    g_assert_nonnull(strstr(f->base.log->str, "published a new version of template"));
    g_assert_true(g_file_test(backing, G_FILE_TEST_IS_REGULAR));
    g_assert_true(g_file_test(versions, G_FILE_TEST_IS_DIR));
    g_assert_cmpint(spTestRun(mk, NULL, NULL), ==, 0);
    g_ptr_array_unref(spTestRefresh(f->a));
    /* A sees the template changed: a published version, no alarm */
    g_assert_nonnull(strstr(f->base.log->str, "has a new version"));
    g_assert_null(strstr(f->base.log->str, "behind libvirt's back"));
    g_assert_false(spPoolUploadBegin(f->b, "t.qcow2", path, 0, &again, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    g_assert_nonnull(strstr(err->message, "images of other pools name its file itself "
                                          "(lab-a (1))"));
}


/* With instances on both hosts, this host's are named, then the others'. */
static void
testLocalAndRemoteNamed(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *a1 = spTestCreateInstance(f->a, "pc01.qcow2", "t.qcow2");
    g_autofree char *a2 = spTestCreateInstance(f->a, "pc02.qcow2", "t.qcow2");
    g_autofree char *b1 = NULL;
    g_autoptr(GError) err = NULL;

    spTestRefresh(f->b);
    b1 = spTestCreateInstance(f->b, "pc11.qcow2", "t.qcow2");
    g_assert_false(deleteTemplate(f->b, &err));
    g_assert_cmpstr(err->message, ==, "cannot delete template 't.qcow2': 1 instance(s) "
                    "depend on it: pc11.qcow2; and of other pools: lab-a (2)");
    g_clear_error(&err);
    g_assert_false(deleteTemplate(f->a, &err));
    g_assert_cmpstr(err->message, ==, "cannot delete template 't.qcow2': 2 instance(s) "
                    "depend on it: pc01.qcow2, pc02.qcow2; and of other pools: lab-b (1)");
}


/* An overlay made behind libvirt's back on host A counts for the other
 * hosts once A refreshes (its background work writes the record). */
static void
testOverlayByHandCountsAfterRefresh(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *template = spPoolVolumePath(f->a, "t.qcow2", FALSE);
    g_autofree char *overlay = spPoolVolumePath(f->a, "byhand.qcow2", TRUE);
    const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", template,
                           "-F", "qcow2", overlay, NULL };
    g_autoptr(GError) err = NULL;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img is not installed");
        return;
    }
    g_assert_cmpint(spTestRun(argv, NULL, NULL), ==, 0);
    g_ptr_array_unref(spTestRefresh(f->a));
    g_assert_false(deleteTemplate(f->b, &err));
    g_assert_cmpstr(err->message, ==, "cannot delete template 't.qcow2': instances "
                    "of other pools depend on it: lab-a (1)");
    g_assert_true(g_file_test(template, G_FILE_TEST_EXISTS));
}


static gpointer
publishThread(gpointer pool)
{
    g_autoptr(GError) err = NULL;

    g_assert_true(spPoolHostsPublish(pool, &err));
    g_assert_no_error(err);
    return NULL;
}


/* A record is rewritten under the store's shared lock only: while a host
 * changing a template holds the exclusive lock and reads the records, no
 * record is renamed under it. */
static void
testRecordWrittenUnderLock(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *template = spPoolVolumePath(f->a, "t.qcow2", FALSE);
    g_autofree char *overlay = spPoolVolumePath(f->a, "byhand.qcow2", TRUE);
    g_autofree char *id = spHostRecordId("lab-a", f->base.secondary);
    g_autoptr(SpHostRecord) before = NULL;
    g_autoptr(SpHostRecord) after = NULL;
    const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", template,
                           "-F", "qcow2", overlay, NULL };
    g_autoptr(GError) err = NULL;
    GThread *thread;
    int lock;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img is not installed");
        return;
    }
    g_assert_true(spPoolHostsPublish(f->a, &err));
    g_assert_cmpint(spTestRun(argv, NULL, NULL), ==, 0);
    lock = spHostsLock(f->base.primary, TRUE, 0, &err);
    g_assert_no_error(err);
    thread = g_thread_new("publish", publishThread, f->a);
    g_usleep(200 * 1000);
    before = spHostRecordRead(f->base.primary, id, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(spHostRecordCount(before, "t.qcow2"), ==, 0);
    close(lock);
    g_thread_join(thread);
    after = spHostRecordRead(f->base.primary, id, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(spHostRecordCount(after, "t.qcow2"), ==, 1);
}


/* Two pools of one host on one template store: each has a record, and
 * protects the other's instances, named by host and secondary tier. */
static void
testTwoPoolsOfOneHost(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *backing = spTestCreateInstance(f->a, "pc01.qcow2", "t.qcow2");
    g_autoptr(GError) err = NULL;
    g_autofree char *want = NULL;

    spPoolSetHost(f->b, "lab-a", "");
    g_assert_false(deleteTemplate(f->b, &err));
    want = g_strdup_printf("cannot delete template 't.qcow2': instances of other pools "
                           "depend on it: lab-a:%s (1)", f->base.secondary);
    g_assert_cmpstr(err->message, ==, want);
}


/* A record that cannot be read may hold dependents: refused. */
static void
testUnreadableRecordRefuses(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *dir = g_build_filename(f->base.primary, SP_HOSTS_DIR, NULL);
    g_autofree char *bad = g_build_filename(dir, "lab-c.00000000", NULL);
    g_autoptr(GError) err = NULL;
    g_autofree char *want = NULL;

    g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
    g_assert_true(g_file_set_contents(bad, "garbage\n", -1, NULL));
    g_assert_false(deleteTemplate(f->b, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    want = g_strdup_printf("the host record 'lab-c.00000000' cannot be read, and may "
                           "count dependents of template 't.qcow2': %s: malformed host "
                           "record, line 1: not a host record", bad);
    g_assert_cmpstr(err->message, ==, want);
    g_clear_error(&err);
    /* The admin forgets the host: its record goes. */
    g_assert_cmpint(unlink(bad), ==, 0);
    g_assert_true(deleteTemplate(f->b, &err));
    g_assert_no_error(err);
}


/* A host that is down still protects what its disks hold; removing its
 * record is how an admin forgets it. */
static void
testStoppedHostStillProtects(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *backing = spTestCreateInstance(f->a, "pc01.qcow2", "t.qcow2");
    g_autofree char *id = spHostRecordId("lab-a", f->base.secondary);
    g_autofree char *record = g_build_filename(f->base.primary, SP_HOSTS_DIR, id, NULL);
    g_autoptr(GError) err = NULL;

    spPoolStop(f->a);
    spPoolWaitIdle(f->a);
    g_clear_pointer(&f->a, spPoolUnref);
    g_assert_false(deleteTemplate(f->b, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    g_clear_error(&err);
    g_assert_cmpint(unlink(record), ==, 0);
    g_assert_true(deleteTemplate(f->b, &err));
    g_assert_no_error(err);
    f->a = hostPool(f->base.primary, f->base.secondary, "lab-a");
}


/* A claim on a template another host deleted fails before any file is
 * written, and leaves the record without the instance. */
static void
testClaimOnDeletedTemplate(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *template = spPoolVolumePath(f->a, "t.qcow2", FALSE);
    g_autofree char *path = spPoolVolumePath(f->a, "pc01.qcow2", TRUE);
    g_autofree char *backing = spPoolInstanceBacking(f->a, template, NULL);
    SpNewVolume vol = { .name = "pc01.qcow2", .path = path, .format = SP_IMAGE_FORMAT_QCOW2,
                        .capacity = 4 * MiB, .backing_path = backing,
                        .backing_format = "qcow2", .mode = 0600,
                        .uid = (uid_t) -1, .gid = (gid_t) -1 };
    g_autoptr(SpHostRecord) record = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *id = NULL;

    g_assert_true(deleteTemplate(f->b, &err));
    g_assert_false(spPoolCreateVolume(f->a, &vol, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_NOT_FOUND);
    g_assert_true(g_str_has_prefix(err->message,
                                   "cannot create an instance of template 't.qcow2': "));
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    id = spHostRecordId("lab-a", f->base.secondary);
    record = spHostRecordRead(f->base.primary, id, NULL);
    g_assert_nonnull(record);
    g_assert_cmpuint(spHostRecordCount(record, "t.qcow2"), ==, 0);
}


typedef struct {
    Fixture *f;
    gint made;
    gint stop;
    gint orphans;       /* instances seen without their template */
} Race;


/* Host A makes and deletes instances of the template as fast as it can;
 * its creates fail only once the template is gone. */
static gpointer
makeInstances(gpointer data)
{
    Race *race = data;
    g_autofree char *template = spPoolVolumePath(race->f->a, "t.qcow2", FALSE);
    g_autofree char *path = spPoolVolumePath(race->f->a, "pc01.qcow2", TRUE);
    g_autofree char *backing = spPoolInstanceBacking(race->f->a, template, NULL);
    SpNewVolume vol = { .name = "pc01.qcow2", .path = path, .format = SP_IMAGE_FORMAT_QCOW2,
                        .capacity = 4 * MiB, .backing_path = backing,
                        .backing_format = "qcow2", .mode = 0600,
                        .uid = (uid_t) -1, .gid = (gid_t) -1 };

    while (!g_atomic_int_get(&race->stop)) {
        if (!spPoolCreateVolume(race->f->a, &vol, NULL))
            break;
        g_atomic_int_inc(&race->made);
        /* The invariant: while an instance lives, its template is there. */
        g_usleep(500);
        if (!g_file_test(template, G_FILE_TEST_EXISTS))
            g_atomic_int_inc(&race->orphans);
        deleteInstance(race->f->a, "pc01.qcow2", backing);
    }
    return NULL;
}


/* Host B deletes the template while A makes instances of it: the delete
 * is refused while an instance exists, and once it succeeds no instance
 * of A is left without its template. */
static void
testRaceCreateAndDelete(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    Race race = { .f = f };
    g_autoptr(GThread) maker = NULL;
    g_autofree char *instance = spPoolVolumePath(f->a, "pc01.qcow2", TRUE);
    guint refused = 0;

    maker = g_thread_new("host-a", makeInstances, &race);
    while (g_atomic_int_get(&race.made) == 0)
        g_usleep(100);
    while (!deleteTemplate(f->b, NULL) && refused < 100000) {
        refused++;
        g_usleep(100);
    }
    g_atomic_int_set(&race.stop, 1);
    g_thread_join(g_steal_pointer(&maker));
    g_test_message("%d instances made, %u deletes refused", race.made, refused);
    g_assert_cmpint(race.orphans, ==, 0);
    g_assert_false(g_file_test(instance, G_FILE_TEST_EXISTS));
}


/* Two machines under one host name would overwrite each other's record:
 * the second one's pool does not start. */
static void
testSameNameOtherMachine(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *backing = NULL;
    g_autoptr(SpPool) twin = spPoolNew(f->base.primary, f->secondary_b, SP_REPLICA_COPY, FALSE);
    g_autoptr(GError) err = NULL;
    g_autofree char *want = NULL;

    spPoolSetHost(f->a, "lab-a", "0123456789abcdef0123456789abcdef");
    backing = spTestCreateInstance(f->a, "pc01.qcow2", "t.qcow2");
    spPoolSetHost(twin, "lab-a", "fedcba9876543210fedcba9876543210");
    g_assert_false(spPoolStart(twin, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_INVALID_STATE);
    want = g_strdup_printf("another machine (0123456789abcdef0123456789abcdef) shares the "
                           "primary tier '%s' under this host's name 'lab-a': give the "
                           "hosts different names", f->base.primary);
    g_assert_cmpstr(err->message, ==, want);
}


/* pool-delete of a pool whose template store another host uses removes
 * nothing there; the last host's pool-delete removes the hosts directory. */
static void
testPoolDeleteKeepsSharedStore(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *hosts = g_build_filename(f->base.primary, SP_HOSTS_DIR, NULL);
    g_autofree char *id = spHostRecordId("lab-a", f->base.secondary);
    g_autofree char *record_a = g_build_filename(hosts, id, NULL);
    g_autoptr(GError) err = NULL;
    g_autofree char *want = NULL;

    g_assert_true(deleteTemplate(f->a, &err));
    spPoolHostsUpdate(f->a);
    spPoolHostsUpdate(f->b);
    g_assert_false(spPoolDeleteTiers(f->b, &err));
    want = g_strdup_printf("cannot delete the primary tier '%s': another pool shares it "
                           "(its record is .stormpool-hosts/%s)", f->base.primary, id);
    g_assert_cmpstr(err->message, ==, want);
    g_assert_true(g_file_test(hosts, G_FILE_TEST_IS_DIR));
    g_clear_error(&err);
    g_assert_cmpint(unlink(record_a), ==, 0);
    g_assert_true(spPoolDeleteTiers(f->b, &err));
    g_assert_no_error(err);
    g_assert_false(g_file_test(f->base.primary, G_FILE_TEST_EXISTS));
    g_assert_cmpint(mkdir(f->base.primary, 0755), ==, 0);
}


/* Work a refresh handed to the worker that is still under way when the
 * pool is stopped and deleted: it rewrites the pool's record. */
static void
slowHostsUpdate(SpPool *pool, gpointer data G_GNUC_UNUSED)
{
    g_usleep(300 * 1000);
    spPoolHostsUpdate(pool);
}


/* pool-delete waits for that work: it neither finds the hosts directory
 * refilled under it ("Directory not empty") nor leaves a record behind. */
static void
testPoolDeleteWaitsForWorker(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *id = spHostRecordId("lab-a", f->base.secondary);
    g_autofree char *record_a = g_build_filename(f->base.primary, SP_HOSTS_DIR, id, NULL);
    g_autoptr(GError) err = NULL;

    g_assert_true(deleteTemplate(f->a, &err));
    spPoolStop(f->a);
    spPoolWaitIdle(f->a);
    unlink(record_a);           /* host A is forgotten, if it wrote one */
    spPoolJobQueue(f->b, slowHostsUpdate, NULL, NULL);
    spPoolStop(f->b);
    g_assert_true(spPoolDeleteTiers(f->b, &err));
    g_assert_no_error(err);
    spPoolWaitIdle(f->b);
    g_assert_false(g_file_test(f->base.primary, G_FILE_TEST_EXISTS));
    g_assert_cmpint(mkdir(f->base.primary, 0755), ==, 0);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) \
    g_test_add("/pool-hosts/" path, Fixture, NULL, setUp, fn, tearDown)
    ADD("instance-on-other-host-protects", testInstanceOnOtherHostProtects);
    ADD("local-and-remote-named", testLocalAndRemoteNamed);
    ADD("version-with-other-hosts-replicas", testVersionWithOtherHostsReplicas);
    ADD("overlay-by-hand-counts-after-refresh", testOverlayByHandCountsAfterRefresh);
    ADD("record-written-under-lock", testRecordWrittenUnderLock);
    ADD("two-pools-of-one-host", testTwoPoolsOfOneHost);
    ADD("unreadable-record-refuses", testUnreadableRecordRefuses);
    ADD("stopped-host-still-protects", testStoppedHostStillProtects);
    ADD("claim-on-deleted-template", testClaimOnDeletedTemplate);
    ADD("race-create-and-delete", testRaceCreateAndDelete);
    ADD("same-name-other-machine", testSameNameOtherMachine);
    ADD("pool-delete-keeps-shared-store", testPoolDeleteKeepsSharedStore);
    ADD("pool-delete-waits-for-worker", testPoolDeleteWaitsForWorker);
#undef ADD
    return g_test_run();
}
