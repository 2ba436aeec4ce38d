/*
 * test_pool_hot.c: policy='hot' and the RAM tier in SpPool: learning a
 * hot set from a copy-on-read instance, reuse, a changed template, the
 * cap, and a RAM tier emptied by a reboot
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <libxml/parser.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pool/pool_private.h"
#include "stormpool/error.h"
#include "image/hot_set.h"
#include "image/image_header.h"
#include "fs/image_lock.h"
#include "replica/template_replica.h"
#include "test_helpers.h"

#define MiB (1024 * 1024)

typedef SpTestPoolFixture Fixture;


/* A started pool @name on the fixture's primary tier and @secondary;
 * @replica is the <stormpool:replica> element. */
static SpPool *
newPoolAt(Fixture *f, const char *name, const char *secondary, const char *replica)
{
    g_autofree char *text = g_strdup_printf(
        "<pool type='stormpool' xmlns:stormpool='urn:stormpool:pool:1.0'>"
        "<name>%s</name><source><dir path='%s'/></source>"
        "<target><path>%s</path></target>%s</pool>", name, f->primary, secondary, replica);
    xmlDocPtr doc = xmlReadMemory(text, strlen(text), "pool.xml", NULL, XML_PARSE_NONET);
    g_autoptr(GError) err = NULL;
    SpPool *pool = spPoolNewFromXml(xmlDocGetRootElement(doc), &err);

    xmlFreeDoc(doc);
    g_assert_no_error(err);
    g_assert_true(spPoolStart(pool, &err));
    g_assert_no_error(err);
    return pool;
}


static SpPool *
newPool(Fixture *f, const char *replica)
{
    return newPoolAt(f, "hot", f->secondary, replica);
}


static void
run(const char *const *argv)
{
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;

    if (spTestRun(argv, &out, &err) != 0)
        g_error("%s failed: %s%s", argv[0], out, err);
}


/* A qcow2 template holding @data_mib MiB of data at offset 0. */
static char *
createTemplate(SpPool *pool, const char *name, guint64 capacity, guint data_mib)
{
    char *path = spPoolVolumePath(pool, name, FALSE);
    g_autofree char *size = g_strdup_printf("%" G_GUINT64_FORMAT, capacity);
    g_autofree char *write = g_strdup_printf("write -P 0xab 0 %uM", data_mib);
    const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", path, size, NULL };
    const char *fill[] = { "qemu-io", "-f", "qcow2", "-c", write, path, NULL };

    run(create);
    if (data_mib)
        run(fill);
    return path;
}


/* What a copy-on-read boot does: read @mib MiB through the instance. */
static void
bootWithCopyOnRead(const char *instance, guint mib)
{
    g_autofree char *read = g_strdup_printf("read 0 %uM", mib);
    const char *argv[] = { "qemu-io", "-C", "-f", "qcow2", "-c", read, instance, NULL };

    run(argv);
}


static char *
createInstance(SpPool *pool, const char *name, const char *template_path, GError **error)
{
    g_autofree char *path = spPoolVolumePath(pool, name, TRUE);
    g_autofree char *backing = spPoolInstanceBacking(pool, template_path, error);
    SpNewVolume vol = { .name = name, .path = path, .format = SP_IMAGE_FORMAT_QCOW2,
                        .capacity = 16 * MiB, .backing_path = backing,
                        .backing_format = "qcow2", .mode = 0600,
                        .uid = (uid_t) -1, .gid = (gid_t) -1 };

    if (!backing || !spPoolCreateVolume(pool, &vol, error))
        return NULL;
    return g_steal_pointer(&backing);
}


static char *
mustCreateInstance(SpPool *pool, const char *name, const char *template_path)
{
    g_autoptr(GError) err = NULL;
    char *backing = createInstance(pool, name, template_path, &err);

    g_assert_no_error(err);
    g_assert_nonnull(backing);
    return backing;
}


static void
refresh(SpPool *pool)
{
    g_autoptr(GError) err = NULL;
    SpTierUsage usage = { 0 };
    g_autoptr(GPtrArray) volumes = spPoolRefresh(pool, &usage, &err);

    spPoolWaitIdle(pool);

    g_assert_no_error(err);
    g_assert_nonnull(volumes);
}


static guint64
heldBytes(const char *image)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SpHotSet) held = spHotSetFromOverlay(image, &err);

    g_assert_no_error(err);
    return spHotSetBytes(held);
}


static gboolean
haveQemu(void)
{
    g_autofree char *io = g_find_program_in_path("qemu-io");

    if (spTestHaveQemuImg() && io)
        return TRUE;
    g_test_skip("qemu-img and qemu-io are needed");
    return FALSE;
}


/* A started pool, policy='copy' with @attrs, whose replicas go to a RAM
 * tier capped at @cap. */
static SpPool *
newRamPool(Fixture *f, const char *attrs, const char *cap)
{
    g_autofree char *replica = g_strdup_printf(
        "<stormpool:replica policy='copy'%s tier='%s' cap='%s'/>", attrs, f->ram, cap);

    return newPool(f, replica);
}


/* A pool whose RAM tier, capped at 6 MiB, cannot hold the replicas of
 * both its templates t1.qcow2 and t2.qcow2 (paths in @t1, @t2): each holds
 * 3 MiB of data, and qcow2 metadata. NULL, the test skipped, without QEMU. */
static SpPool *
newCrowdedRamPool(Fixture *f, const char *attrs, char **t1, char **t2)
{
    SpPool *pool;

    if (!haveQemu())
        return NULL;
    pool = newRamPool(f, attrs, "6M");
    *t1 = createTemplate(pool, "t1.qcow2", 16 * MiB, 3);
    *t2 = createTemplate(pool, "t2.qcow2", 16 * MiB, 3);
    return pool;
}


/* A pool of policy='hot' with a template t.qcow2 holding @data_mib MiB
 * of data, and the path of learner.qcow2, the instance to learn its hot
 * set from; NULL, the test skipped, without QEMU. */
static SpPool *
newHotPool(Fixture *f, guint data_mib, char **template, char **learner)
{
    SpPool *pool;

    if (!haveQemu())
        return NULL;
    pool = newPool(f, "<stormpool:replica policy='hot'/>");
    *template = createTemplate(pool, "t.qcow2", 16 * MiB, data_mib);
    *learner = spPoolVolumePath(pool, "learner.qcow2", TRUE);
    return pool;
}


/* Learning, reuse, and a changed template that is learned again. */
static void
testLearn(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = NULL;
    g_autofree char *template = NULL;
    g_autofree char *first = NULL;
    g_autofree char *second = NULL;
    g_autofree char *third = NULL;
    g_autofree char *changed = NULL;
    g_autofree char *learner = NULL;
    g_autofree char *old_identity = NULL;
    g_autofree char *old_set = NULL;
    g_autofree char *probe = NULL;
    g_autoptr(GError) err = NULL;
    int held;

    if (!(pool = newHotPool(f, 4, &template, &learner)))
        return;

    /* no hot set yet: instances back onto the template, never waiting */
    first = mustCreateInstance(pool, "learner.qcow2", template);
    g_assert_cmpstr(first, ==, template);
    refresh(pool);
    g_assert_null(strstr(f->log->str, "learned"));

    /* the admin's copy-on-read boot reads 2 MiB of the template; while
     * QEMU still holds the instance its boot may not be over */
    bootWithCopyOnRead(learner, 2);
    held = spImageLockReader(learner, &err);
    g_assert_no_error(err);
    g_assert_cmpint(held, >=, 0);
    refresh(pool);
    g_assert_null(strstr(f->log->str, "learned"));
    close(held);
    /* a lookup never learns (a scan and a write under libvirt's pool
     * lock): refresh hands learning to the pool's worker */
    probe = spPoolInstanceBacking(pool, template, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(probe, ==, template);
    g_assert_null(strstr(f->log->str, "learned"));
    refresh(pool);
    g_assert_nonnull(strstr(f->log->str, "learned the hot set of template"));
    second = mustCreateInstance(pool, "a.qcow2", template);
    g_assert_true(g_str_has_prefix(second, f->secondary));
    g_assert_nonnull(strstr(second, "/" SP_REPLICA_DIR "/t.qcow2/"));
    g_assert_cmpuint(heldBytes(second), ==, 2 * MiB);
    old_identity = g_path_get_basename(second);
    old_set = spPoolHotSetPath(pool, "t.qcow2", old_identity);
    g_assert_true(g_file_test(old_set, G_FILE_TEST_IS_REGULAR));

    /* the next instance reuses it */
    third = mustCreateInstance(pool, "b.qcow2", template);
    g_assert_cmpstr(third, ==, second);

    /* a changed template has a new identity and no hot set; the learner,
     * on the template itself, goes first (a change would corrupt it) */
    g_assert_true(spPoolDeleteVolume(pool, "learner.qcow2", learner, template, &err));
    g_assert_no_error(err);
    sleep(1);
    g_assert_cmpint(truncate(template, 0), ==, 0);
    g_free(createTemplate(pool, "t.qcow2", 16 * MiB, 1));
    changed = mustCreateInstance(pool, "c.qcow2", template);
    g_assert_cmpstr(changed, ==, template);
    refresh(pool);
    g_assert_false(g_file_test(old_set, G_FILE_TEST_EXISTS));
    /* instances made before keep their hot replica */
    g_assert_true(g_file_test(second, G_FILE_TEST_IS_REGULAR));
    spPoolReplicasStop(pool);
}


/* Two hosts (two pools here) share the primary tier: the hot set one of
 * them learned is published there, and the other makes its hot replica
 * from it at once, without a learning boot of its own; a changed template
 * takes the published set with it. */
static void
testSharedHotSet(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = NULL;
    g_autoptr(SpPool) other = NULL;
    g_autofree char *template = NULL;
    g_autofree char *learner = NULL;
    g_autofree char *secondary = g_build_filename(f->root, "ssd2", NULL);
    g_autofree char *identity = NULL;
    g_autofree char *shared = NULL;
    g_autofree char *backing = NULL;
    g_autofree char *replica_identity = NULL;
    g_autofree char *own = NULL;
    g_autoptr(GError) err = NULL;

    if (!(pool = newHotPool(f, 4, &template, &learner)))
        return;
    g_assert_cmpint(mkdir(secondary, 0755), ==, 0);
    other = newPoolAt(f, "hot2", secondary, "<stormpool:replica policy='hot'/>");
    g_free(mustCreateInstance(pool, "learner.qcow2", template));
    bootWithCopyOnRead(learner, 2);
    refresh(pool);
    identity = spReplicaStoreIdentity(template, &err);
    g_assert_no_error(err);
    shared = g_build_filename(f->primary, SP_HOT_SET_DIR, "t.qcow2", identity, NULL);
    g_assert_true(g_file_test(shared, G_FILE_TEST_IS_REGULAR));

    /* the other host's first instance backs onto a hot replica of its own */
    backing = mustCreateInstance(other, "b1.qcow2", template);
    g_assert_true(g_str_has_prefix(backing, secondary));
    g_assert_nonnull(strstr(backing, "/" SP_REPLICA_DIR "/t.qcow2/"));
    g_assert_cmpuint(heldBytes(backing), ==, 2 * MiB);
    /* and keeps the set as its own: the published one may go first */
    replica_identity = g_path_get_basename(backing);
    own = spPoolHotSetPath(other, "t.qcow2", replica_identity);
    g_assert_true(g_file_test(own, G_FILE_TEST_IS_REGULAR));

    /* a changed template: its published set goes with the next collection */
    g_assert_true(spPoolDeleteVolume(pool, "learner.qcow2", learner, template, &err));
    g_assert_no_error(err);
    sleep(1);
    g_assert_cmpint(truncate(template, 0), ==, 0);
    g_free(createTemplate(pool, "t.qcow2", 16 * MiB, 1));
    refresh(other);
    g_assert_false(g_file_test(shared, G_FILE_TEST_EXISTS));
    spPoolReplicasStop(pool);
    spPoolReplicasStop(other);
}


/* A refresh learns and makes the hot replica in the background. */
static void
testLearnAtRefresh(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = NULL;
    g_autofree char *template = NULL;
    g_autofree char *learner = NULL;
    g_autofree char *replica = NULL;
    g_autofree char *backing = NULL;
    g_autoptr(GError) err = NULL;
    gint64 deadline;

    if (!(pool = newHotPool(f, 2, &template, &learner)))
        return;
    g_free(mustCreateInstance(pool, "learner.qcow2", template));
    bootWithCopyOnRead(learner, 1);
    refresh(pool);
    g_assert_nonnull(strstr(f->log->str, "learned the hot set"));
    replica = spPoolCurrentReplica(pool, template, &err);
    g_assert_no_error(err);
    deadline = g_get_monotonic_time() + 20 * G_TIME_SPAN_SECOND;
    while (!g_file_test(replica, G_FILE_TEST_EXISTS) && g_get_monotonic_time() < deadline)
        g_usleep(20000);
    spPoolReplicasStop(pool);
    g_assert_true(g_file_test(replica, G_FILE_TEST_IS_REGULAR));
    /* kept for the next instance although nothing uses it yet */
    spPoolReplicasAllow(pool);
    refresh(pool);
    g_assert_true(g_file_test(replica, G_FILE_TEST_IS_REGULAR));
    backing = mustCreateInstance(pool, "a.qcow2", template);
    g_assert_cmpstr(backing, ==, replica);
    spPoolReplicasStop(pool);
}


/* A job that holds the worker until the test lets it go. */
typedef struct {
    GMutex lock;
    GCond cond;
    gboolean running;
    gboolean released;
} Blocker;


static void
blockWorker(SpPool *pool G_GNUC_UNUSED, gpointer data)
{
    Blocker *blocker = data;

    g_mutex_lock(&blocker->lock);
    blocker->running = TRUE;
    g_cond_broadcast(&blocker->cond);
    while (!blocker->released)
        g_cond_wait(&blocker->cond, &blocker->lock);
    g_mutex_unlock(&blocker->lock);
}


static void
blockerSet(Blocker *blocker, gboolean *field)
{
    g_mutex_lock(&blocker->lock);
    *field = TRUE;
    g_cond_broadcast(&blocker->cond);
    g_mutex_unlock(&blocker->lock);
}


static void
blockerWaitRunning(Blocker *blocker)
{
    g_mutex_lock(&blocker->lock);
    while (!blocker->running)
        g_cond_wait(&blocker->cond, &blocker->lock);
    g_mutex_unlock(&blocker->lock);
}


/* spPoolRefresh itself only scans: with the worker busy elsewhere it
 * returns having learned nothing, and the worker learns afterwards. */
static void
testRefreshHandsOver(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = NULL;
    g_autofree char *template = NULL;
    g_autofree char *learner = NULL;
    g_autoptr(GPtrArray) volumes = NULL;
    g_autoptr(GError) err = NULL;
    Blocker blocker = { 0 };
    SpTierUsage usage;

    if (!(pool = newHotPool(f, 2, &template, &learner)))
        return;
    g_free(mustCreateInstance(pool, "learner.qcow2", template));
    bootWithCopyOnRead(learner, 1);
    spPoolJobQueue(pool, blockWorker, &blocker, NULL);
    blockerWaitRunning(&blocker);
    volumes = spPoolRefresh(pool, &usage, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(volumes->len, ==, 2);
    g_assert_null(strstr(f->log->str, "learned"));
    blockerSet(&blocker, &blocker.released);
    spPoolWaitIdle(pool);
    g_assert_nonnull(strstr(f->log->str, "learned the hot set of template"));
    spPoolReplicasStop(pool);
}


/* What a host reboot does to a pool with a RAM tier: the tmpfs is empty
 * when the pool starts again. */
static void
reboot(Fixture *f, SpPool *pool)
{
    g_autofree char *ram = g_build_filename(f->root, "ram", NULL);
    g_autoptr(GError) err = NULL;

    spTestTempDirFree(g_steal_pointer(&ram));
    g_assert_false(g_file_test(f->ram, G_FILE_TEST_EXISTS));
    spPoolStop(pool);
    g_assert_true(spPoolStart(pool, &err));
    g_assert_no_error(err);
}


/* Host reboot: the RAM tier is empty; pool-start and refresh make the
 * replicas instances name again, and remove a killed copy's temporary. */
static void
testRamRebuild(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = NULL;
    g_autofree char *template = NULL;
    g_autofree char *backing = NULL;
    g_autofree char *dir = NULL;
    g_autofree char *tmp = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) lines = NULL;
    g_autofree char *want = NULL;
    g_autofree char *got = NULL;
    struct stat sb;
    guint64 used;

    if (!haveQemu())
        return;
    pool = newRamPool(f, "", "64M");
    g_assert_true(g_file_test(f->ram, G_FILE_TEST_IS_DIR));
    template = createTemplate(pool, "t.qcow2", 16 * MiB, 3);
    backing = mustCreateInstance(pool, "a.qcow2", template);
    g_assert_true(g_str_has_prefix(backing, f->ram));

    reboot(f, pool);
    dir = g_path_get_dirname(backing);
    g_assert_cmpint(g_mkdir_with_parents(dir, 0711), ==, 0);
    tmp = g_build_filename(dir, ".stormpool-tmp-0123456789abcdef-Ab12Cd", NULL);
    g_assert_true(g_file_set_contents(tmp, "partial", -1, NULL));
    refresh(pool);
    g_assert_true(g_file_test(backing, G_FILE_TEST_IS_REGULAR));
    g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
    g_assert_nonnull(strstr(f->log->str, "made the missing replica"));
    /* pool-dumpxml shows the RAM tier against its cap */
    g_assert_cmpint(stat(backing, &sb), ==, 0);
    used = (guint64) sb.st_blocks * 512;
    want = g_strdup_printf(
        "  <stormpool:tier name='ram' path='%s'>\n"
        "    <stormpool:capacity unit='bytes'>%d</stormpool:capacity>\n"
        "    <stormpool:allocation unit='bytes'>%" G_GUINT64_FORMAT "</stormpool:allocation>\n"
        "    <stormpool:available unit='bytes'>%" G_GUINT64_FORMAT "</stormpool:available>\n"
        "  </stormpool:tier>\n"
        "</stormpool:tiers>", f->ram, 64 * MiB, used, 64 * MiB - used);
    lines = spPoolFormatXml(pool);
    g_assert_cmpuint(lines->len, ==, 21);
    g_ptr_array_set_size(lines, 18);
    g_ptr_array_remove_range(lines, 0, 12);
    g_ptr_array_add(lines, NULL);
    got = g_strjoinv("\n", (char **) lines->pdata);
    g_assert_cmpstr(got, ==, want);
    spPoolReplicasStop(pool);
}


/* A guest started after a reboot, before the worker made its replica
 * again (the worker is busy elsewhere): libvirt reads its volume again
 * (refreshVol), and the replica is made for it there. */
static void
testRamRebuildAtGuestStart(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = NULL;
    g_autofree char *template = NULL;
    g_autofree char *backing = NULL;
    g_autofree char *instance = NULL;
    g_autoptr(SpVolume) volume = NULL;
    g_autoptr(GError) err = NULL;
    Blocker blocker = { 0 };

    if (!haveQemu())
        return;
    pool = newRamPool(f, "", "64M");
    template = createTemplate(pool, "t.qcow2", 16 * MiB, 3);
    backing = mustCreateInstance(pool, "a.qcow2", template);
    instance = spPoolVolumePath(pool, "a.qcow2", TRUE);
    reboot(f, pool);
    spPoolJobQueue(pool, blockWorker, &blocker, NULL);
    blockerWaitRunning(&blocker);
    volume = spPoolRefreshVolume(pool, instance, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(volume->backing_path, ==, backing);
    g_assert_true(g_file_test(backing, G_FILE_TEST_IS_REGULAR));
    blockerSet(&blocker, &blocker.released);
    spPoolWaitIdle(pool);
    spPoolReplicasStop(pool);
}


/* The cap is never exceeded: unused replicas are evicted least recently
 * used first, and a replica that cannot fit is refused. */
static void
testRamCap(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = NULL;
    g_autofree char *t1 = NULL;
    g_autofree char *t2 = NULL;
    g_autofree char *t3 = NULL;
    g_autofree char *r1 = NULL;
    g_autofree char *r2 = NULL;
    g_autofree char *i1 = NULL;
    g_autofree char *i3 = NULL;
    g_autofree char *want = NULL;
    g_autoptr(GError) err = NULL;

    if (!(pool = newCrowdedRamPool(f, "", &t1, &t2)))
        return;
    t3 = createTemplate(pool, "t3.qcow2", 16 * MiB, 5);
    r1 = mustCreateInstance(pool, "i1.qcow2", t1);
    i1 = spPoolVolumePath(pool, "i1.qcow2", TRUE);
    /* the instance goes behind libvirt's back: its replica is unused */
    g_assert_cmpint(unlink(i1), ==, 0);
    r2 = mustCreateInstance(pool, "i2.qcow2", t2);
    g_assert_false(g_file_test(r1, G_FILE_TEST_EXISTS));
    g_assert_nonnull(strstr(f->log->str, "evicted unused replica"));
    /* i2 uses its replica: nothing can make room for a third */
    g_assert_null(createInstance(pool, "i3.qcow2", t3, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_NO_SPACE);
    want = g_strdup_printf("RAM tier '%s' is capped at 6.0 MiB: ", f->ram);
    g_assert_true(g_str_has_prefix(err->message, want));
    g_assert_true(g_file_test(r2, G_FILE_TEST_IS_REGULAR));
    i3 = spPoolVolumePath(pool, "i3.qcow2", TRUE);
    g_assert_false(g_file_test(i3, G_FILE_TEST_EXISTS));
}


static void
waitForLog(Fixture *f, const char *text)
{
    gint64 deadline = g_get_monotonic_time() + 30 * G_TIME_SPAN_SECOND;

    while (!strstr(f->log->str, text) && g_get_monotonic_time() < deadline)
        g_usleep(20000);
    if (!strstr(f->log->str, text))
        g_error("'%s' not logged in:\n%s", text, f->log->str);
}


/* Eager replicas that do not fit together do not evict each other (they
 * would at every refresh); an instance build may evict a kept one. */
static void
testRamEagerNoChurn(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = NULL;
    g_autofree char *t1 = NULL;
    g_autofree char *t2 = NULL;
    g_autofree char *r1 = NULL;
    g_autofree char *r2 = NULL;
    g_autofree char *backing = NULL;
    g_autoptr(GError) err = NULL;

    if (!(pool = newCrowdedRamPool(f, " prepare='eager'", &t1, &t2)))
        return;
    r1 = spPoolCurrentReplica(pool, t1, &err);
    r2 = spPoolCurrentReplica(pool, t2, &err);
    g_assert_no_error(err);
    refresh(pool);
    waitForLog(f, "is capped at 6.0 MiB");
    spPoolReplicasStop(pool);
    /* exactly one of them was made, the other refused */
    g_assert_true(g_file_test(r1, G_FILE_TEST_EXISTS) != g_file_test(r2, G_FILE_TEST_EXISTS));
    g_assert_null(strstr(f->log->str, "evicted"));
    spPoolReplicasAllow(pool);
    if (g_file_test(r1, G_FILE_TEST_EXISTS)) {
        backing = mustCreateInstance(pool, "i.qcow2", t2);
        g_assert_cmpstr(backing, ==, r2);
        g_assert_false(g_file_test(r1, G_FILE_TEST_EXISTS));
    } else {
        backing = mustCreateInstance(pool, "i.qcow2", t1);
        g_assert_cmpstr(backing, ==, r1);
        g_assert_false(g_file_test(r2, G_FILE_TEST_EXISTS));
    }
    g_assert_nonnull(strstr(f->log->str, "evicted unused replica"));
    spPoolReplicasStop(pool);
}


/* A template's instances on a RAM-tier replica protect it. */
static void
testRamProtects(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = NULL;
    g_autofree char *template = NULL;
    g_autofree char *backing = NULL;
    g_autofree char *instance = NULL;
    g_autoptr(GError) err = NULL;

    if (!haveQemu())
        return;
    pool = newRamPool(f, "", "64M");
    template = createTemplate(pool, "t.qcow2", 16 * MiB, 1);
    instance = spPoolVolumePath(pool, "a.qcow2", TRUE);
    backing = mustCreateInstance(pool, "a.qcow2", template);
    g_assert_false(spPoolDeleteVolume(pool, "t.qcow2", template, NULL, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    g_assert_cmpstr(err->message, ==,
                    "cannot delete template 't.qcow2': 1 instance(s) depend on it: a.qcow2");
    g_clear_error(&err);
    refresh(pool);
    g_assert_true(g_file_test(backing, G_FILE_TEST_IS_REGULAR));

    /* an emptied pool can be deleted, its RAM tier with it */
    g_assert_true(spPoolDeleteVolume(pool, "a.qcow2", instance, backing, &err));
    g_assert_true(spPoolDeleteVolume(pool, "t.qcow2", template, NULL, &err));
    g_assert_no_error(err);
    g_assert_false(g_file_test(backing, G_FILE_TEST_EXISTS));
    spPoolStop(pool);
    g_assert_true(spPoolDeleteTiers(pool, &err));
    g_assert_no_error(err);
    g_assert_false(g_file_test(f->ram, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(f->secondary, G_FILE_TEST_EXISTS));
}


#define ADD(name, func) \
    g_test_add("/pool-hot/" name, Fixture, NULL, spTestPoolSetUp, func, spTestPoolTearDown)

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_log_set_always_fatal(G_LOG_FATAL_MASK);
    ADD("learn", testLearn);
    ADD("refresh-hands-over", testRefreshHandsOver);
    ADD("learn-at-refresh", testLearnAtRefresh);
    ADD("shared-hot-set", testSharedHotSet);
    ADD("ram-rebuild", testRamRebuild);
    ADD("ram-rebuild-at-guest-start", testRamRebuildAtGuestStart);
    ADD("ram-cap", testRamCap);
    ADD("ram-eager-no-churn", testRamEagerNoChurn);
    ADD("ram-protects", testRamProtects);
    return g_test_run();
}
