/*
 * test_pool_chains.c: the pool knows every chain in its tiers, whoever
 * made it (core/pool/pool_chains.c): images that qemu-img, libvirt's
 * block jobs and snapshots add are listed with their role, protect what
 * they back onto, and stop protecting it once they no longer do
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <unistd.h>

#include "pool/pool_private.h"
#include "stormpool/error.h"
#include "image/image_header.h"
#include "test_helpers.h"

#define MiB (1024 * 1024)

typedef SpTestPoolFixture Fixture;


/* qemu-img create -f qcow2 -b BACKING -F FORMAT PATH, as a snapshot or a
 * shallow blockcopy makes a layer. */
static void
makeLayer(const char *path, const char *backing, const char *format)
{
    const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", backing,
                           "-F", format, path, NULL };

    g_assert_cmpint(spTestRun(argv, NULL, NULL), ==, 0);
}


static int
compareStrings(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char * const *) a, *(char * const *) b);
}


/* "role:name" of each volume, sorted by name, one string. */
static char *
volumeRoles(GPtrArray *volumes)
{
    g_autoptr(GPtrArray) items = g_ptr_array_new_with_free_func(g_free);
    guint i;

    for (i = 0; i < volumes->len; i++) {
        SpVolume *v = g_ptr_array_index(volumes, i);

        g_ptr_array_add(items, g_strdup_printf("%s:%s", v->name, spVolumeRoleName(v->role)));
    }
    g_ptr_array_sort(items, compareStrings);
    g_ptr_array_add(items, NULL);
    return g_strjoinv(" ", (char **) items->pdata);
}


static gboolean
haveQemuImg(void)
{
    if (spTestHaveQemuImg())
        return TRUE;
    g_test_skip("qemu-img is not installed");
    return FALSE;
}


/* Snapshot layers, a layer on a layer and an image of its own in the
 * secondary tier are listed as layers, next to the pool's own volumes. */
static void
testRefreshListsLayers(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_COPY);
    g_autofree char *instance = spPoolVolumePath(pool, "pc01.qcow2", TRUE);
    g_autofree char *s1 = spPoolVolumePath(pool, "pc01.s1", TRUE);
    g_autofree char *s2 = spPoolVolumePath(pool, "pc01.s2", TRUE);
    g_autofree char *own = spPoolVolumePath(pool, "backup.img", TRUE);
    g_autofree char *backing = NULL;
    g_autofree char *roles = NULL;
    g_autoptr(GPtrArray) volumes = NULL;

    if (!haveQemuImg())
        return;
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    backing = spTestCreateInstance(pool, "pc01.qcow2", "t.qcow2");
    makeLayer(s1, instance, "qcow2");
    makeLayer(s2, s1, "qcow2");
    g_assert_true(g_file_set_contents(own, "raw data", -1, NULL));
    volumes = spTestRefresh(pool);
    roles = volumeRoles(volumes);
    g_assert_cmpstr(roles, ==, "backup.img:layer pc01.qcow2:instance pc01.s1:layer "
                    "pc01.s2:layer t.qcow2:template");
    g_assert_null(strstr(f->log->str, "warning:"));
}


static void
assertRefused(gboolean ok, GError *err, const char *want)
{
    g_assert_false(ok);
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    g_assert_cmpstr(err->message, ==, want);
}


/* A layer made after the last refresh, behind libvirt's back, protects
 * its base at once; a layer on a layer protects the one below; deleting
 * from the top down frees each in turn. */
static void
testLayerOnLayer(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *instance = spPoolVolumePath(pool, "pc01.qcow2", TRUE);
    g_autofree char *s1 = spPoolVolumePath(pool, "pc01.s1", TRUE);
    g_autofree char *s2 = spPoolVolumePath(pool, "pc01.s2", TRUE);
    g_autofree char *backing = NULL;
    g_autofree char *want = NULL;
    g_autoptr(GError) err = NULL;
    gboolean ok;

    if (!haveQemuImg())
        return;
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    backing = spTestCreateInstance(pool, "pc01.qcow2", "t.qcow2");
    g_ptr_array_unref(spTestRefresh(pool));
    makeLayer(s1, instance, "qcow2");
    makeLayer(s2, s1, "qcow2");
    ok = spPoolDeleteVolume(pool, "pc01.s1", s1, instance, &err);
    want = g_strdup_printf("cannot delete layer 'pc01.s1': 1 layer(s) in '%s' back onto "
                           "it: pc01.s2", f->secondary);
    assertRefused(ok, err, want);
    g_clear_error(&err);
    g_assert_true(g_file_test(s1, G_FILE_TEST_IS_REGULAR));
    g_assert_true(spPoolDeleteVolume(pool, "pc01.s2", s2, s1, &err));
    g_assert_no_error(err);
    g_assert_true(spPoolDeleteVolume(pool, "pc01.s1", s1, instance, &err));
    g_assert_no_error(err);
    g_assert_true(spPoolDeleteVolume(pool, "pc01.qcow2", instance, backing, &err));
    g_assert_no_error(err);
}


/* An overlay of a template that qemu-img (or virt-clone, or a shallow
 * blockcopy) put into the secondary tier after the last refresh is an
 * instance like the pool's own: the template is not deleted under it. */
static void
testTemplateInstanceBehindBack(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *copy = spPoolVolumePath(pool, "copy.qcow2", TRUE);
    g_autoptr(GError) err = NULL;
    gboolean ok;

    if (!haveQemuImg())
        return;
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    g_ptr_array_unref(spTestRefresh(pool));
    makeLayer(copy, template, "qcow2");
    ok = spPoolDeleteVolume(pool, "t.qcow2", template, NULL, &err);
    assertRefused(ok, err, "cannot delete template 't.qcow2': 1 instance(s) depend on it: "
                  "copy.qcow2");
    g_assert_true(g_file_test(template, G_FILE_TEST_IS_REGULAR));
}


/* An overlay in the secondary tier named like a template is never listed
 * (the template keeps the name), but its template is still protected. */
static void
testUnlistedOverlayProtects(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *clash = spPoolVolumePath(pool, "t.qcow2", TRUE);
    g_autofree char *backing = NULL;
    g_autofree char *roles = NULL;
    g_autoptr(GPtrArray) volumes = NULL;
    g_autoptr(GError) err = NULL;
    gboolean ok;

    if (!haveQemuImg())
        return;
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    backing = spTestCreateInstance(pool, "pc01.qcow2", "t.qcow2");
    makeLayer(clash, template, "qcow2");
    volumes = spTestRefresh(pool);
    roles = volumeRoles(volumes);
    g_assert_cmpstr(roles, ==, "pc01.qcow2:instance t.qcow2:template");
    ok = spPoolDeleteVolume(pool, "t.qcow2", template, NULL, &err);
    assertRefused(ok, err, "cannot delete template 't.qcow2': 2 instance(s) depend on it: "
                  "pc01.qcow2, t.qcow2");
}


/* However an overlay names its template (relative, through a link to the
 * primary tier), it depends on it; an overlay of a file outside the
 * tiers is not listed and protects nothing of the pool. */
static void
testBackingSpellings(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *alias = g_build_filename(f->root, "alias", NULL);
    g_autofree char *via_alias = g_build_filename(alias, "t.qcow2", NULL);
    g_autofree char *other = g_build_filename(f->root, "other.qcow2", NULL);
    g_autofree char *relative = spPoolVolumePath(pool, "relative.qcow2", TRUE);
    g_autofree char *aliased = spPoolVolumePath(pool, "aliased.qcow2", TRUE);
    g_autofree char *foreign = spPoolVolumePath(pool, "foreign.qcow2", TRUE);
    g_autofree char *roles = NULL;
    g_autoptr(GPtrArray) volumes = NULL;
    g_autoptr(GError) err = NULL;
    const char *make_other[] = { "qemu-img", "create", "-q", "-f", "qcow2", other, "1M", NULL };
    gboolean ok;

    if (!haveQemuImg())
        return;
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    g_assert_cmpint(symlink(f->primary, alias), ==, 0);
    g_assert_cmpint(spTestRun(make_other, NULL, NULL), ==, 0);
    makeLayer(relative, "../hdd/t.qcow2", "qcow2");
    makeLayer(aliased, via_alias, "qcow2");
    makeLayer(foreign, other, "qcow2");
    ok = spPoolDeleteVolume(pool, "t.qcow2", template, NULL, &err);
    assertRefused(ok, err, "cannot delete template 't.qcow2': 2 instance(s) depend on it: "
                  "aliased.qcow2, relative.qcow2");
    volumes = spTestRefresh(pool);
    roles = volumeRoles(volumes);
    g_assert_cmpstr(roles, ==, "aliased.qcow2:instance relative.qcow2:instance t.qcow2:template");
}


/* blockpull rewrites an instance's header in place to back onto nothing
 * (or onto a lower image): the template it no longer needs is free at
 * once, without a refresh. */
static void
testPulledInstanceFreesTemplate(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *instance = spPoolVolumePath(pool, "pc01.qcow2", TRUE);
    g_autofree char *backing = NULL;
    g_autoptr(GError) err = NULL;
    const char *pull[] = { "qemu-img", "rebase", "-q", "-f", "qcow2", "-b", "", instance, NULL };
    gboolean ok;

    if (!haveQemuImg())
        return;
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    backing = spTestCreateInstance(pool, "pc01.qcow2", "t.qcow2");
    g_ptr_array_unref(spTestRefresh(pool));
    ok = spPoolDeleteVolume(pool, "t.qcow2", template, NULL, &err);
    assertRefused(ok, err, "cannot delete template 't.qcow2': 1 instance(s) depend on it: "
                  "pc01.qcow2");
    g_clear_error(&err);
    g_assert_cmpint(spTestRun(pull, NULL, NULL), ==, 0);
    g_assert_true(spPoolDeleteVolume(pool, "t.qcow2", template, NULL, &err));
    g_assert_no_error(err);
}


/* vol-wipe of a snapshot layer discards its data and keeps it a layer
 * of the same base; an image of its own is wiped as any file. */
static void
testWipeLayer(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *instance = spPoolVolumePath(pool, "pc01.qcow2", TRUE);
    g_autofree char *s1 = spPoolVolumePath(pool, "pc01.s1", TRUE);
    g_autofree char *own = spPoolVolumePath(pool, "backup.img", TRUE);
    g_autofree char *backing = NULL;
    g_auto(SpImageInfo) info = { 0 };
    g_autoptr(GError) err = NULL;
    gboolean wipe_here = TRUE;
    const char payload[] = "the layer's own data";

    if (!haveQemuImg())
        return;
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    backing = spTestCreateInstance(pool, "pc01.qcow2", "t.qcow2");
    makeLayer(s1, instance, "qcow2");
    spTestWriteAt(s1, MiB, payload, sizeof(payload));
    g_assert_true(spPoolWipeVolume(pool, "pc01.s1", s1, TRUE, &wipe_here, &err));
    g_assert_no_error(err);
    g_assert_false(wipe_here);
    g_assert_true(spImageInfoRead(s1, &info, &err));
    g_assert_cmpstr(info.backing_file, ==, instance);
    g_assert_cmpuint(info.file_size, <, MiB);
    g_assert_true(g_file_set_contents(own, "raw data", -1, NULL));
    g_assert_true(spPoolWipeVolume(pool, "backup.img", own, TRUE, &wipe_here, &err));
    g_assert_no_error(err);
    g_assert_true(wipe_here);
}


/* The index is what createVol answers from: a layer is no template. */
static void
testLayerIsNoTemplate(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *instance = spPoolVolumePath(pool, "pc01.qcow2", TRUE);
    g_autofree char *s1 = spPoolVolumePath(pool, "pc01.s1", TRUE);
    g_autofree char *backing = NULL;
    g_autofree char *want = NULL;
    g_autoptr(GError) err = NULL;
    g_autoptr(SpVolumePlan) plan = NULL;
    SpVolumeRequest request = { .pool_name = "lab", .name = "pc02.qcow2",
                                .format = SP_IMAGE_FORMAT_QCOW2, .format_name = "qcow2",
                                .backing = TRUE, .backing_spec = "pc01.s1" };

    if (!haveQemuImg())
        return;
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    backing = spTestCreateInstance(pool, "pc01.qcow2", "t.qcow2");
    makeLayer(s1, instance, "qcow2");
    g_ptr_array_unref(spTestRefresh(pool));
    plan = spPoolPlanVolume(pool, &request, &err);
    g_assert_null(plan);
    want = g_strdup_printf("backing volume 'pc01.s1' is a layer; an instance must back onto "
                           "a template in the primary tier '%s'", f->primary);
    g_assert_error(err, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_cmpstr(err->message, ==, want);
}


/* A sync on the worker thread scans the tiers while libvirt's thread
 * builds a volume: the scan, older than the build, does not drop it. */
static void
testScanKeepsNewerChanges(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autoptr(GPtrArray) scanned = g_ptr_array_new();
    g_autoptr(SpVolumeEntry) kept = NULL;
    g_autoptr(SpVolumeEntry) dropped = NULL;
    SpVolumeEntry entry = { .name = (char *) "new.qcow2", .path = (char *) "/x/new.qcow2",
                            .role = SP_ROLE_TEMPLATE, .building = TRUE };
    guint64 began = spPoolIndexGeneration(pool);

    spPoolIndexAdd(pool, &entry);
    spPoolIndexBuilt(pool, "new.qcow2", TRUE);
    spPoolIndexReplace(pool, scanned, NULL, began);
    kept = spPoolIndexLookup(pool, "new.qcow2");
    g_assert_nonnull(kept);
    g_assert_false(kept->building);
    /* a scan that began after the build and did not find the file */
    spPoolIndexReplace(pool, scanned, NULL, spPoolIndexGeneration(pool));
    dropped = spPoolIndexLookup(pool, "new.qcow2");
    g_assert_null(dropped);
}


/* The pool's transient tier, made as pool-start makes it. */
static char *
transientTier(Fixture *f, SpPool *pool)
{
    char *tier = g_build_filename(f->root, "lab-tmp", NULL);

    g_assert_cmpint(g_mkdir_with_parents(tier, 0755), ==, 0);
    pool->ns->transient_tier = g_strdup(tier);
    return tier;
}


/* The per-boot layer of a stateless guest in the transient tier protects
 * the instance it backs onto, as a layer of the secondary tier does; once
 * libvirt removed it, the instance goes. */
static void
testTransientLayerProtectsInstance(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *tier = transientTier(f, pool);
    g_autofree char *instance = spPoolVolumePath(pool, "pc01.qcow2", TRUE);
    g_autofree char *layer = g_build_filename(tier, "pc01.qcow2.TRANSIENT-pc02", NULL);
    g_autofree char *backing = NULL;
    g_autofree char *want = NULL;
    g_autoptr(GError) err = NULL;
    gboolean ok;

    if (!haveQemuImg())
        return;
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    backing = spTestCreateInstance(pool, "pc01.qcow2", "t.qcow2");
    makeLayer(layer, instance, "qcow2");
    ok = spPoolDeleteVolume(pool, "pc01.qcow2", instance, backing, &err);
    want = g_strdup_printf("cannot delete instance 'pc01.qcow2': 1 layer(s) in '%s' back "
                           "onto it: pc01.qcow2.TRANSIENT-pc02", tier);
    assertRefused(ok, err, want);
    g_clear_error(&err);
    g_assert_cmpint(unlink(layer), ==, 0);
    g_assert_true(spPoolDeleteVolume(pool, "pc01.qcow2", instance, backing, &err));
    g_assert_no_error(err);
}


/* A stateless guest on the template itself reads it through its replica
 * (libvirt patch 0009): its layer in the transient tier keeps the
 * template, as the instances do. Other files of the tier are not ours. */
static void
testTransientLayerProtectsTemplate(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_COPY);
    g_autofree char *tier = transientTier(f, pool);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *layer = g_build_filename(tier, "t.qcow2.TRANSIENT-pc01", NULL);
    g_autofree char *other = g_build_filename(tier, "scratch.qcow2", NULL);
    g_autofree char *replica = NULL;
    g_autoptr(GError) err = NULL;
    gboolean ok;

    if (!haveQemuImg())
        return;
    spTestCreateTemplate(pool, "t.qcow2", 4 * MiB);
    replica = spTestCreateInstance(pool, "pc02.qcow2", "t.qcow2");
    makeLayer(layer, replica, "qcow2");
    makeLayer(other, template, "qcow2");
    ok = spPoolDeleteVolume(pool, "t.qcow2", template, NULL, &err);
    assertRefused(ok, err, "cannot delete template 't.qcow2': 2 instance(s) depend on it: "
                  "pc02.qcow2, t.qcow2.TRANSIENT-pc01");
    g_assert_true(g_file_test(replica, G_FILE_TEST_IS_REGULAR));
}


#define ADD(name, func) \
    g_test_add("/pool-chains/" name, Fixture, NULL, spTestPoolSetUp, func, spTestPoolTearDown)

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_log_set_always_fatal(G_LOG_FATAL_MASK);
    ADD("transient-layer-protects-instance", testTransientLayerProtectsInstance);
    ADD("transient-layer-protects-template", testTransientLayerProtectsTemplate);
    ADD("refresh-lists-layers", testRefreshListsLayers);
    ADD("layer-on-layer", testLayerOnLayer);
    ADD("template-instance-behind-back", testTemplateInstanceBehindBack);
    ADD("unlisted-overlay-protects", testUnlistedOverlayProtects);
    ADD("backing-spellings", testBackingSpellings);
    ADD("pulled-instance-frees-template", testPulledInstanceFreesTemplate);
    ADD("wipe-layer", testWipeLayer);
    ADD("layer-is-no-template", testLayerIsNoTemplate);
    ADD("scan-keeps-newer-changes", testScanKeepsNewerChanges);
    return g_test_run();
}
