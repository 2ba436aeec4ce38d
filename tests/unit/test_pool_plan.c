/*
 * test_pool_plan.c: what a new volume will be, decided by the core before
 * libvirt's createVol returns (spPoolPlanVolume)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <unistd.h>

#include "pool/pool_private.h"
#include "stormpool/error.h"
#include "image/qcow2_overlay.h"
#include "test_helpers.h"

#define MiB (1024 * 1024)

typedef SpTestPoolFixture Fixture;


static SpVolumeRequest
templateRequest(const char *name, SpImageFormat format, guint64 capacity)
{
    SpVolumeRequest request = {
        .pool_name = "lab", .name = name, .format = format,
        .format_name = format == SP_IMAGE_FORMAT_RAW ? "raw" : "qcow2",
        .capacity = capacity,
    };

    return request;
}


static SpVolumeRequest
instanceRequest(const char *name, const char *backing, guint64 capacity)
{
    SpVolumeRequest request = templateRequest(name, SP_IMAGE_FORMAT_QCOW2, capacity);

    request.backing = TRUE;
    request.backing_spec = backing;
    return request;
}


/* What libvirt does for vol-create: createVol, then buildVol. */
static SpVolumePlan *
planAndWrite(SpPool *pool, const SpVolumeRequest *request)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SpVolumePlan) plan = spPoolPlanVolume(pool, request, &err);
    SpNewVolume vol = { .name = request->name, .format = request->format,
                        .mode = (mode_t) -1, .uid = (uid_t) -1, .gid = (gid_t) -1 };

    g_assert_no_error(err);
    vol.path = plan->path;
    vol.capacity = plan->capacity;
    vol.backing_path = plan->backing_path;
    vol.backing_format = plan->backing_format == SP_IMAGE_FORMAT_RAW ? "raw" : "qcow2";
    g_assert_true(spPoolCreateVolume(pool, &vol, &err));
    g_assert_no_error(err);
    return g_steal_pointer(&plan);
}


static void
assertRefused(SpPool *pool, const SpVolumeRequest *request, SpErrorCode code,
              const char *message)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(SpVolumePlan) plan = spPoolPlanVolume(pool, request, &err);

    g_assert_null(plan);
    g_assert_error(err, SP_ERROR, (gint) code);
    g_assert_cmpstr(err->message, ==, message);
}


static void
testTemplate(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    SpVolumeRequest request = templateRequest("t.qcow2", SP_IMAGE_FORMAT_QCOW2, 4 * MiB);
    g_autoptr(SpVolumePlan) plan = planAndWrite(pool, &request);
    g_autofree char *path = g_build_filename(f->primary, "t.qcow2", NULL);

    g_assert_cmpstr(plan->path, ==, path);
    g_assert_cmpuint(plan->capacity, ==, 4 * MiB);
    g_assert_null(plan->backing_path);
    g_assert_true(g_file_test(path, G_FILE_TEST_IS_REGULAR));
}


/* An instance takes its template's size and backs onto it (policy none). */
static void
testInstance(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    SpVolumeRequest template = templateRequest("t.qcow2", SP_IMAGE_FORMAT_QCOW2, 4 * MiB);
    SpVolumeRequest request = instanceRequest("i.qcow2", "t.qcow2", 0);
    g_autoptr(SpVolumePlan) t = planAndWrite(pool, &template);
    g_autoptr(SpVolumePlan) plan = planAndWrite(pool, &request);
    g_autofree char *path = g_build_filename(f->secondary, "i.qcow2", NULL);

    g_assert_cmpstr(plan->path, ==, path);
    g_assert_cmpuint(plan->capacity, ==, 4 * MiB);
    g_assert_cmpstr(plan->backing_path, ==, t->path);
    g_assert_cmpint(plan->backing_format, ==, SP_IMAGE_FORMAT_QCOW2);
}


/* By path as libvirt spells it, or by the path of one of its replicas
 * (vol-clone of an instance names its backing file). */
static void
testInstanceBySpec(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_COPY);
    SpVolumeRequest template = templateRequest("t.img", SP_IMAGE_FORMAT_RAW, 2 * MiB);
    g_autoptr(SpVolumePlan) t = planAndWrite(pool, &template);
    g_autofree char *messy = g_strdup_printf("%s//t.img/", f->primary);
    SpVolumeRequest by_path = instanceRequest("a.qcow2", messy, 0);
    g_autoptr(SpVolumePlan) a = planAndWrite(pool, &by_path);
    SpVolumeRequest by_replica = instanceRequest("b.qcow2", a->backing_path, 0);
    g_autoptr(SpVolumePlan) b = planAndWrite(pool, &by_replica);

    g_assert_true(g_str_has_prefix(a->backing_path, f->secondary));
    g_assert_cmpint(a->backing_format, ==, SP_IMAGE_FORMAT_RAW);
    g_assert_cmpstr(b->backing_path, ==, a->backing_path);
}


/* By the path of another host's replica, which names the same secondary
 * tier with an identity this host does not have (what an incremental
 * migration's pre-created instance names): while the template has one
 * version only, that is the version, and the instance backs onto this
 * host's own replica. */
static void
testInstanceByOtherHostsReplica(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_COPY);
    SpVolumeRequest template = templateRequest("t.img", SP_IMAGE_FORMAT_RAW, 2 * MiB);
    g_autoptr(SpVolumePlan) t = planAndWrite(pool, &template);
    g_autofree char *other = g_build_filename(f->secondary, ".stormpool-replicas", "t.img",
                                              "0123456789abcdef", NULL);
    SpVolumeRequest request = instanceRequest("migrated.qcow2", other, 0);
    g_autoptr(SpVolumePlan) plan = planAndWrite(pool, &request);

    g_assert_true(g_str_has_prefix(plan->backing_path, f->secondary));
    g_assert_cmpstr(plan->backing_path, !=, other);
    g_assert_cmpint(plan->backing_format, ==, SP_IMAGE_FORMAT_RAW);
}


/* A template is listed as being built from its plan on: an instance of
 * it waits for its data; a template that could not be written is gone. */
static void
testTemplateBeingBuilt(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    SpVolumeRequest template = templateRequest("t.qcow2", SP_IMAGE_FORMAT_QCOW2, MiB);
    SpVolumeRequest instance = instanceRequest("i.qcow2", "t.qcow2", 0);
    g_autoptr(GError) err = NULL;
    g_autoptr(SpVolumePlan) plan = spPoolPlanVolume(pool, &template, &err);
    SpNewVolume vol = { .name = "t.qcow2", .path = plan->path,
                        .format = SP_IMAGE_FORMAT_QCOW2, .capacity = MiB,
                        .mode = (mode_t) -1, .uid = (uid_t) -1, .gid = (gid_t) -1,
                        .prealloc_metadata = TRUE };
    g_autofree char *gone = g_strdup_printf(
        "backing volume 't.qcow2' is not a template of pool 'lab' "
        "(templates are the volumes in '%s')", f->primary);

    g_assert_no_error(err);
    assertRefused(pool, &instance, SP_ERROR_INVALID_STATE,
                  "template 't.qcow2' is still being created");
    g_assert_false(spPoolCreateVolume(pool, &vol, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_false(g_file_test(plan->path, G_FILE_TEST_EXISTS));
    assertRefused(pool, &instance, SP_ERROR_NOT_FOUND, gone);
}


/* The lookup answers from what the pool lists, as libvirt's list would:
 * a file that appeared since the last refresh is no template yet. */
static void
testListedOnly(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    g_autofree char *path = g_build_filename(f->primary, "t.img", NULL);
    SpVolumeRequest instance = instanceRequest("i.qcow2", "t.img", 0);
    g_autoptr(GPtrArray) volumes = NULL;
    g_autoptr(SpVolumePlan) plan = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *want = g_strdup_printf(
        "backing volume 't.img' is not a template of pool 'lab' "
        "(templates are the volumes in '%s')", f->primary);
    SpTierUsage usage;

    g_assert_true(g_file_set_contents(path, "", 0, NULL));
    g_assert_cmpint(truncate(path, MiB), ==, 0);
    assertRefused(pool, &instance, SP_ERROR_NOT_FOUND, want);
    volumes = spPoolRefresh(pool, &usage, &err);
    g_assert_no_error(err);
    spPoolWaitIdle(pool);
    plan = spPoolPlanVolume(pool, &instance, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(plan->backing_path, ==, path);
    g_assert_cmpint(plan->backing_format, ==, SP_IMAGE_FORMAT_RAW);
}


static void
testRefusals(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_NONE);
    SpVolumeRequest template = templateRequest("t.qcow2", SP_IMAGE_FORMAT_QCOW2, 4 * MiB);
    g_autoptr(SpVolumePlan) t = planAndWrite(pool, &template);
    SpVolumeRequest i = instanceRequest("i.qcow2", "t.qcow2", 0);
    g_autoptr(SpVolumePlan) instance = planAndWrite(pool, &i);
    SpVolumeRequest request;
    g_autofree char *limit = g_strdup_printf(
        "capacity %" G_GUINT64_FORMAT " of volume 'big.qcow2' is larger than the qcow2 "
        "limit of %" G_GUINT64_FORMAT " bytes",
        spQcow2MaxVirtualSize(SP_QCOW2_DEFAULT_CLUSTER_BITS) + 1,
        spQcow2MaxVirtualSize(SP_QCOW2_DEFAULT_CLUSTER_BITS));
    g_autofree char *not_template = g_strdup_printf(
        "backing volume 'i.qcow2' is an instance; an instance must back onto a template "
        "in the primary tier '%s'", f->primary);

    request = templateRequest("v.vmdk", SP_IMAGE_FORMAT_OTHER, MiB);
    request.format_name = "vmdk";
    assertRefused(pool, &request, SP_ERROR_UNSUPPORTED,
                  "unsupported volume format 'vmdk': stormpool volumes are qcow2 or raw");
    request = templateRequest("e.qcow2", SP_IMAGE_FORMAT_QCOW2, MiB);
    request.encrypted = TRUE;
    assertRefused(pool, &request, SP_ERROR_UNSUPPORTED,
                  "stormpool does not support encrypted volumes");
    request = templateRequest("n.qcow2", SP_IMAGE_FORMAT_QCOW2, 0);
    assertRefused(pool, &request, SP_ERROR_INVALID_ARG, "template 'n.qcow2' needs a capacity");
    request = templateRequest("big.qcow2", SP_IMAGE_FORMAT_QCOW2,
                              spQcow2MaxVirtualSize(SP_QCOW2_DEFAULT_CLUSTER_BITS) + 1);
    assertRefused(pool, &request, SP_ERROR_INVALID_ARG, limit);
    request = instanceRequest("r.img", "t.qcow2", 0);
    request.format = SP_IMAGE_FORMAT_RAW;
    request.format_name = "raw";
    assertRefused(pool, &request, SP_ERROR_UNSUPPORTED,
                  "instance 'r.img' must be a qcow2 overlay, not raw");
    request = instanceRequest("p.qcow2", NULL, 0);
    assertRefused(pool, &request, SP_ERROR_XML, "<backingStore> of an instance needs a <path>");
    request = instanceRequest("s.qcow2", "t.qcow2", MiB);
    assertRefused(pool, &request, SP_ERROR_INVALID_ARG,
                  "capacity 1048576 of instance 's.qcow2' is smaller than its template "
                  "'t.qcow2' (4194304 bytes)");
    request = instanceRequest("f.qcow2", "t.qcow2", 0);
    request.backing_raw = TRUE;
    assertRefused(pool, &request, SP_ERROR_INVALID_ARG,
                  "backing format 'raw' does not match template 't.qcow2', which is qcow2");
    request = instanceRequest("o.qcow2", "i.qcow2", 0);
    assertRefused(pool, &request, SP_ERROR_INVALID_ARG, not_template);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(name, func) \
    g_test_add("/pool-plan/" name, Fixture, NULL, spTestPoolSetUp, func, spTestPoolTearDown)
    ADD("template", testTemplate);
    ADD("instance", testInstance);
    ADD("instance-by-spec", testInstanceBySpec);
    ADD("instance-by-other-hosts-replica", testInstanceByOtherHostsReplica);
    ADD("template-being-built", testTemplateBeingBuilt);
    ADD("listed-only", testListedOnly);
    ADD("refusals", testRefusals);
    return g_test_run();
}
