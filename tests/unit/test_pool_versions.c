/*
 * test_pool_versions.c: vol-upload of a new version of a template that
 * instances depend on; the old version kept for them, wipe moving an
 * instance onto the new one, rollback, collection, wrong uploads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/parser.h>

#include "pool/pool_namespace.h"
#include "pool/pool_private.h"
#include "replica/template_versions.h"
#include "stormpool/error.h"
#include "test_helpers.h"

#define MiB (1024 * 1024)

typedef SpTestPoolFixture Fixture;


static void
run(const char *const *argv)
{
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;

    if (spTestRun(argv, &out, &err) != 0)
        g_error("%s failed: %s%s", argv[0], out, err);
}


/* A qcow2 image of 2 MiB at @path whose first MiB holds @pattern. */
static void
makeImage(const char *path, guint pattern)
{
    g_autofree char *write = g_strdup_printf("write -P 0x%02x 0 1M", pattern);
    const char *create[] = { "qemu-img", "create", "-q", "-f", "qcow2", path, "2M", NULL };
    const char *fill[] = { "qemu-io", "-f", "qcow2", "-c", write, path, NULL };

    run(create);
    run(fill);
}


static void
copyFile(const char *from, const char *to)
{
    g_autofree char *data = NULL;
    gsize len = 0;

    g_assert_true(g_file_get_contents(from, &data, &len, NULL));
    g_assert_true(g_file_set_contents(to, data, len, NULL));
}


static ino_t
inodeOf(const char *path)
{
    struct stat sb;

    g_assert_cmpint(stat(path, &sb), ==, 0);
    return sb.st_ino;
}


/* What libvirt's upload stream does: write into the existing file, in
 * place, from offset 0. */
static void
writeInPlace(const char *from, const char *to)
{
    g_autofree char *data = NULL;
    gsize len = 0;
    int fd = open(to, O_WRONLY | O_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    g_assert_true(g_file_get_contents(from, &data, &len, NULL));
    g_assert_cmpint(write(fd, data, len), ==, (gssize) len);
    close(fd);
}


/* vol-upload as the module does it: begin, the stream writes @image's
 * bytes to the target (NULL: the stream never opened), then ends. */
static char *
upload(SpPool *pool, const char *name, const char *image)
{
    g_autofree char *path = spPoolVolumePath(pool, name, FALSE);
    g_autoptr(GError) err = NULL;
    char *target = NULL;

    g_assert_true(spPoolUploadBegin(pool, name, path, 0, &target, &err));
    g_assert_no_error(err);
    if (image)
        writeInPlace(image, target);
    spPoolUploadOpened(pool, target, image != NULL);
    return target;
}


/* A template "t.qcow2" holding version 1 (0x11), and instance pc01 on it. */
static SpPool *
poolWithInstance(Fixture *f, SpReplicaPolicy policy, char **v1, char **backing)
{
    SpPool *pool = spTestPoolNew(f, policy);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);

    *v1 = g_build_filename(f->root, "v1.qcow2", NULL);
    makeImage(*v1, 0x11);
    spTestCreateTemplate(pool, "t.qcow2", MiB);
    copyFile(*v1, template);
    g_ptr_array_unref(spTestRefresh(pool));
    *backing = spTestCreateInstance(pool, "pc01.qcow2", "t.qcow2");
    return pool;
}


static char *
backingOf(const char *overlay)
{
    g_auto(SpImageInfo) info = { 0 };
    g_autoptr(GError) err = NULL;

    g_assert_true(spImageInfoRead(overlay, &info, &err));
    return g_strdup(info.backing_file);
}


/* The upload goes to a file of its own; the template serves on, and
 * becomes the new version once the stream has ended; pc01 keeps v1,
 * kept under its identity; a new instance gets v2. */

/* The line of @lines (NULL-terminated) that names @path. */
static const char *
lineWith(GPtrArray *lines, const char *path)
{
    g_autofree char *quoted = g_strdup_printf("path='%s'", path);
    guint i;

    for (i = 0; i < lines->len && g_ptr_array_index(lines, i); i++) {
        if (strstr(g_ptr_array_index(lines, i), quoted))
            return g_ptr_array_index(lines, i);
    }
    g_assert_not_reached();
    return NULL;
}

static void
testPublish(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *v1 = NULL, *r1 = NULL, *v2 = NULL, *r2 = NULL, *target = NULL;
    g_autoptr(SpPool) pool = poolWithInstance(f, SP_REPLICA_COPY, &v1, &r1);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *identity = g_path_get_basename(r1);
    g_autofree char *kept = spVersionPath(f->primary, "t.qcow2", identity);
    ino_t before = inodeOf(template);
    g_autoptr(GPtrArray) xml = NULL;
    g_autofree char *status = NULL;
    gboolean same = FALSE;

    if (!spTestHaveQemuImg())
        return;
    v2 = g_build_filename(f->root, "v2.qcow2", NULL);
    makeImage(v2, 0x22);
    target = upload(pool, "t.qcow2", v2);
    g_assert_true(g_str_has_prefix(target, f->primary));
    g_assert_nonnull(strstr(target, "/" SP_VERSION_DIR "/t.qcow2/upload-"));
    g_assert_cmpuint(inodeOf(template), ==, before);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_cmpuint(inodeOf(template), !=, before);
    g_assert_true(spVersionSameBytes(template, v2, &same, NULL) && same);
    g_assert_false(g_file_test(target, G_FILE_TEST_EXISTS));
    /* pc01 keeps v1: its replica, and v1's file kept under v1's identity */
    g_assert_cmpuint(inodeOf(kept), ==, before);
    g_assert_true(g_file_test(r1, G_FILE_TEST_IS_REGULAR));
    g_assert_true(spVersionSameBytes(r1, v1, &same, NULL) && same);
    g_assert_nonnull(strstr(f->log->str, "published a new version of template 't.qcow2'"));
    r2 = spTestCreateInstance(pool, "pc02.qcow2", "t.qcow2");
    g_assert_cmpstr(r2, !=, r1);
    g_assert_true(spVersionSameBytes(r2, v2, &same, NULL) && same);
    /* pool-dumpxml shows the kept version and its dependent */
    g_ptr_array_unref(spTestRefresh(pool));
    xml = spPoolFormatXml(pool);
    g_ptr_array_add(xml, NULL);
    status = g_strjoinv("\n", (char **) xml->pdata);
    g_assert_nonnull(strstr(status, "<stormpool:version template='t.qcow2'"));
    g_assert_nonnull(strstr(status, identity));
    g_assert_nonnull(strstr(status, "dependents='1'"));
    /* only v2's replica is the one new instances (and transient disks on
     * the template) get */
    g_assert_nonnull(strstr(lineWith(xml, r2), " current='yes' format='qcow2'/>"));
    g_assert_null(strstr(lineWith(xml, r1), "current="));
}


/* vol-wipe moves an instance onto the newest version; the old version,
 * its replica and its directory go once nothing depends on them. */
static void
testWipeRecomposes(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *v1 = NULL, *r1 = NULL, *v2 = NULL, *target = NULL, *after = NULL;
    g_autoptr(SpPool) pool = poolWithInstance(f, SP_REPLICA_COPY, &v1, &r1);
    g_autofree char *pc01 = spPoolVolumePath(pool, "pc01.qcow2", TRUE);
    g_autofree char *versions = g_build_filename(f->primary, SP_VERSION_DIR, NULL);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *current = NULL;
    g_autoptr(GError) err = NULL;
    gboolean here = TRUE;

    if (!spTestHaveQemuImg())
        return;
    v2 = g_build_filename(f->root, "v2.qcow2", NULL);
    makeImage(v2, 0x22);
    target = upload(pool, "t.qcow2", v2);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_true(spPoolWipeVolume(pool, "pc01.qcow2", pc01, TRUE, &here, &err));
    g_assert_no_error(err);
    g_assert_false(here);
    after = backingOf(pc01);
    current = spPoolInstanceBacking(pool, template, &err);
    g_assert_cmpstr(after, ==, current);
    g_assert_cmpstr(after, !=, r1);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_false(g_file_test(r1, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(versions, G_FILE_TEST_EXISTS));
    g_assert_nonnull(strstr(f->log->str, "nothing depends on it any more"));
}


/* Uploading the bytes of a kept version again makes that version the
 * template again, with its identity: its replica serves new instances. */
static void
testRollback(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *v1 = NULL, *r1 = NULL, *v2 = NULL, *t2 = NULL, *t3 = NULL, *r3 = NULL;
    g_autoptr(SpPool) pool = poolWithInstance(f, SP_REPLICA_COPY, &v1, &r1);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    ino_t first = inodeOf(template);

    if (!spTestHaveQemuImg())
        return;
    v2 = g_build_filename(f->root, "v2.qcow2", NULL);
    makeImage(v2, 0x22);
    t2 = upload(pool, "t.qcow2", v2);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_cmpuint(inodeOf(template), !=, first);
    t3 = upload(pool, "t.qcow2", v1);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_cmpuint(inodeOf(template), ==, first);
    g_assert_nonnull(strstr(f->log->str, "published an older version again"));
    r3 = spTestCreateInstance(pool, "pc03.qcow2", "t.qcow2");
    g_assert_cmpstr(r3, ==, r1);
}


static void
assertUnchanged(SpPool *pool, const char *target, ino_t before, const char *v1)
{
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    gboolean same = FALSE;

    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_cmpuint(inodeOf(template), ==, before);
    g_assert_true(spVersionSameBytes(template, v1, &same, NULL) && same);
    g_assert_false(g_file_test(target, G_FILE_TEST_EXISTS));
}


/* Not an image, a format the pool refuses, a stream that broke off or
 * never opened: the template and pc01 are untouched, no file is left. */
static void
testWrongUploads(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *v1 = NULL, *r1 = NULL;
    g_autoptr(SpPool) pool = poolWithInstance(f, SP_REPLICA_COPY, &v1, &r1);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *text = g_build_filename(f->root, "notes.txt", NULL);
    g_autofree char *vmdk = g_build_filename(f->root, "disk.vmdk", NULL);
    g_autofree char *cut = g_build_filename(f->root, "cut.qcow2", NULL);
    g_autofree char *big = g_build_filename(f->root, "big.qcow2", NULL);
    g_autofree char *t1 = NULL, *t2 = NULL, *t3 = NULL, *t4 = NULL;
    const char *mkvmdk[] = { "qemu-img", "create", "-q", "-f", "vmdk", vmdk, "2M", NULL };
    const char *fill[] = { "qemu-io", "-f", "qcow2", "-c", "write -P 0x33 0 8M", big, NULL };
    const char *mkbig[] = { "qemu-img", "create", "-q", "-f", "qcow2", big, "16M", NULL };
    ino_t before = inodeOf(template);
    g_autofree char *bytes = NULL;
    gsize len = 0;

    if (!spTestHaveQemuImg())
        return;
    g_assert_true(g_file_set_contents(text, "not an image\n", -1, NULL));
    run(mkvmdk);
    run(mkbig);
    run(fill);
    g_assert_true(g_file_get_contents(big, &bytes, &len, NULL));
    g_assert_true(g_file_set_contents(cut, bytes, len / 2, NULL));
    t1 = upload(pool, "t.qcow2", text);
    assertUnchanged(pool, t1, before, v1);
    g_assert_nonnull(strstr(f->log->str, "the upload is no qcow2 image (no qcow2 header), the template a qcow2 image"));
    t2 = upload(pool, "t.qcow2", vmdk);
    assertUnchanged(pool, t2, before, v1);
    t3 = upload(pool, "t.qcow2", cut);
    assertUnchanged(pool, t3, before, v1);
    g_assert_nonnull(strstr(f->log->str, "is not a whole qcow2 image"));
    t4 = upload(pool, "t.qcow2", NULL);
    assertUnchanged(pool, t4, before, v1);
    g_assert_true(g_file_test(r1, G_FILE_TEST_IS_REGULAR));
}


/* A stream still open keeps its version unpublished and refuses a second
 * upload; a daemon killed meanwhile leaves the old template, and the
 * next pool's refresh removes the upload's file. */
static void
testStreamOpenAndCrash(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *v1 = NULL, *r1 = NULL, *target = NULL, *again = NULL;
    g_autoptr(SpPool) pool = poolWithInstance(f, SP_REPLICA_COPY, &v1, &r1);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autoptr(SpPool) restarted = NULL;
    g_autoptr(GError) err = NULL;
    ino_t before = inodeOf(template);
    int fd;

    if (!spTestHaveQemuImg())
        return;
    g_assert_true(spPoolUploadBegin(pool, "t.qcow2", template, 0, &target, &err));
    fd = open(target, O_WRONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, "QFI\xfb", 4), ==, 4);
    spPoolUploadOpened(pool, target, TRUE);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_cmpuint(inodeOf(template), ==, before);
    g_assert_true(g_file_test(target, G_FILE_TEST_EXISTS));
    g_assert_false(spPoolUploadBegin(pool, "t.qcow2", template, 0, &again, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    g_clear_error(&err);
    /* the old template still serves new instances meanwhile */
    g_free(spTestCreateInstance(pool, "pc02.qcow2", "t.qcow2"));
    /* another pool on the same tiers leaves an upload a live daemon holds */
    restarted = spTestPoolNew(f, SP_REPLICA_COPY);
    g_ptr_array_unref(spTestRefresh(restarted));
    g_assert_true(g_file_test(target, G_FILE_TEST_EXISTS));
    /* kill -9: the stream's descriptor and the daemon's memory are gone */
    close(fd);
    spPoolStop(pool);
    g_clear_pointer(&pool, spPoolUnref);
    g_ptr_array_unref(spTestRefresh(restarted));
    g_assert_cmpuint(inodeOf(template), ==, before);
    g_assert_false(g_file_test(target, G_FILE_TEST_EXISTS));
    g_assert_nonnull(strstr(f->log->str, "the upload of a version that never ended"));
}


/* An instance naming the template's file itself (policy none) pins it:
 * a new version would change what it reads. */
static void
testPinnedRefused(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *v1 = NULL, *backing = NULL, *target = NULL;
    g_autoptr(SpPool) pool = poolWithInstance(f, SP_REPLICA_NONE, &v1, &backing);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *want = g_strdup_printf(
        "cannot upload a new version of template 't.qcow2': 1 image(s) name its file "
        "'%s' itself as their backing file, which must keep its contents: pc01.qcow2 "
        "(instances of policy 'none', or made before the template's hot set was "
        "learned, or made by hand)", template);
    g_autoptr(GError) err = NULL;

    g_assert_cmpstr(backing, ==, template);
    g_assert_false(spPoolUploadBegin(pool, "t.qcow2", template, 0, &target, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    g_assert_cmpstr(err->message, ==, want);
    g_assert_null(target);
}


/* Without dependents an upload writes the template, as it always did. */
static void
testNoDependents(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpPool) pool = spTestPoolNew(f, SP_REPLICA_COPY);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *versions = g_build_filename(f->primary, SP_VERSION_DIR, NULL);
    g_autofree char *target = NULL;
    g_autoptr(GError) err = NULL;

    spTestCreateTemplate(pool, "t.qcow2", MiB);
    g_assert_true(spPoolUploadBegin(pool, "t.qcow2", template, 0, &target, &err));
    g_assert_cmpstr(target, ==, template);
    spPoolUploadOpened(pool, target, FALSE);
    g_assert_false(g_file_test(versions, G_FILE_TEST_EXISTS));
}


/* After a reboot emptied the RAM tier, the replica of an instance of an
 * older version is made again from the kept version, not from the
 * template, which is another version by now. */
static void
testRamRebuildFromVersion(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *text = g_strdup_printf(
        "<pool type='stormpool' xmlns:stormpool='urn:stormpool:pool:1.0'>"
        "<name>lab</name><source><dir path='%s'/></source>"
        "<target><path>%s</path></target>"
        "<stormpool:replica policy='copy' tier='%s' cap='64M'/></pool>",
        f->primary, f->secondary, f->ram);
    xmlDocPtr doc = xmlReadMemory(text, strlen(text), "pool.xml", NULL, XML_PARSE_NONET);
    g_autoptr(GError) err = NULL;
    g_autoptr(SpPool) pool = spPoolNewFromXml(xmlDocGetRootElement(doc), &err);
    g_autofree char *template = NULL, *v1 = NULL, *v2 = NULL, *r1 = NULL, *t = NULL;
    g_autofree char *pc01 = NULL;
    g_autoptr(SpVolume) volume = NULL;
    gboolean same = FALSE;

    xmlFreeDoc(doc);
    g_assert_no_error(err);
    if (!spTestHaveQemuImg())
        return;
    g_assert_true(spPoolStart(pool, &err));
    template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    pc01 = spPoolVolumePath(pool, "pc01.qcow2", TRUE);
    v1 = g_build_filename(f->root, "v1.qcow2", NULL);
    v2 = g_build_filename(f->root, "v2.qcow2", NULL);
    makeImage(v1, 0x11);
    makeImage(v2, 0x22);
    spTestCreateTemplate(pool, "t.qcow2", MiB);
    copyFile(v1, template);
    g_ptr_array_unref(spTestRefresh(pool));
    r1 = spTestCreateInstance(pool, "pc01.qcow2", "t.qcow2");
    g_assert_true(g_str_has_prefix(r1, f->ram));
    t = upload(pool, "t.qcow2", v2);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_cmpint(unlink(r1), ==, 0);
    volume = spPoolRefreshVolume(pool, pc01, &err);
    g_assert_no_error(err);
    g_assert_true(spVersionSameBytes(r1, v1, &same, NULL) && same);
    spPoolReplicasStop(pool);
}


/* Under policy hot the hot replica names the kept version of the
 * template, not the template: instances on it keep reading version 1
 * after version 2 is published, and do not pin the template. */
static void
testHotReplicaKeepsItsVersion(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *v1 = NULL, *v2 = NULL, *direct = NULL, *hot = NULL, *t = NULL;
    g_autoptr(SpPool) pool = poolWithInstance(f, SP_REPLICA_HOT, &v1, &direct);
    g_autofree char *template = spPoolVolumePath(pool, "t.qcow2", FALSE);
    g_autofree char *learner = spPoolVolumePath(pool, "pc01.qcow2", TRUE);
    g_autofree char *a = spPoolVolumePath(pool, "a.qcow2", TRUE);
    g_autofree char *kept = NULL, *identity = NULL, *named = NULL;
    const char *boot[] = { "qemu-io", "-C", "-f", "qcow2", "-c", "read 0 1M", learner, NULL };
    const char *check[] = { "qemu-io", "-r", "-U", "-f", "qcow2", "-c",
                            "read -P 0x11 0 1M", a, NULL };
    g_autofree char *out = NULL;
    g_autoptr(GError) err = NULL;

    if (!spTestHaveQemuImg())
        return;
    /* pc01 is the learner: booted with copy-on-read, then deleted (it
     * names the template itself) */
    g_assert_cmpstr(direct, ==, template);
    run(boot);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_true(spPoolDeleteVolume(pool, "pc01.qcow2", learner, template, &err));
    g_assert_no_error(err);
    hot = spTestCreateInstance(pool, "a.qcow2", "t.qcow2");
    g_assert_nonnull(strstr(hot, "/" SP_REPLICA_DIR "/t.qcow2/"));
    identity = g_path_get_basename(hot);
    kept = spVersionPath(f->primary, "t.qcow2", identity);
    named = backingOf(hot);
    g_assert_cmpstr(named, ==, kept);
    v2 = g_build_filename(f->root, "v2.qcow2", NULL);
    makeImage(v2, 0x22);
    t = upload(pool, "t.qcow2", v2);
    g_ptr_array_unref(spTestRefresh(pool));
    g_assert_cmpuint(inodeOf(template), !=, inodeOf(kept));
    g_assert_cmpint(spTestRun(check, &out, NULL), ==, 0);
    g_assert_null(strstr(out, "Pattern verification failed"));
    spPoolReplicasStop(pool);
}


/* pool-dumpxml's output can be defined again: the versions status is
 * accepted and dropped, like the other status elements. */
static void
testStatusDropped(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *text = g_strdup_printf(
        "<pool type='stormpool' xmlns:stormpool='urn:stormpool:pool:1.0'>"
        "<name>lab</name><source><dir path='%s'/></source>"
        "<target><path>%s</path></target>"
        "<stormpool:versions><stormpool:version template='t.qcow2' "
        "path='%s/.stormpool-versions/t.qcow2/0123456789abcdef' dependents='1' "
        "size='1' allocation='0'/></stormpool:versions></pool>",
        f->primary, f->secondary, f->primary);
    xmlDocPtr doc = xmlReadMemory(text, strlen(text), "pool.xml", NULL, XML_PARSE_NONET);
    g_autoptr(SpPoolNamespace) ns = NULL;
    g_autoptr(GError) err = NULL;

    ns = spPoolNamespaceParse(xmlDocGetRootElement(doc), NULL, NULL, &err);
    xmlFreeDoc(doc);
    g_assert_no_error(err);
    g_assert_null(ns->versions);
}


/* Version 2 of "t.qcow2" (0x22) uploaded and published by a refresh. */
static void
publishVersion2(Fixture *f, SpPool *pool)
{
    g_autofree char *v2 = g_build_filename(f->root, "v2.qcow2", NULL);
    g_autofree char *target = NULL;

    makeImage(v2, 0x22);
    target = upload(pool, "t.qcow2", v2);
    g_ptr_array_unref(spTestRefresh(pool));
}


/* What libvirt's createVol asks for an instance whose backing is named
 * by the path of a replica (a migrated or cloned desktop's chain). */
static SpVolumePlan *
planOnto(SpPool *pool, const char *name, const char *replica, GError **error)
{
    SpVolumeRequest request = {
        .pool_name = "lab", .name = name, .format = SP_IMAGE_FORMAT_QCOW2,
        .format_name = "qcow2", .backing = TRUE, .backing_spec = replica,
    };

    return spPoolPlanVolume(pool, &request, error);
}


/* An instance named onto this host's replica of an older version (a
 * clone's, or a migrated desktop's chain) backs onto that very replica:
 * the data it was made on. */
static void
testOlderReplicaKept(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *v1 = NULL, *r1 = NULL, *r2 = NULL;
    g_autoptr(SpPool) pool = poolWithInstance(f, SP_REPLICA_COPY, &v1, &r1);
    g_autoptr(SpVolumePlan) old = NULL;
    g_autoptr(SpVolumePlan) made = NULL;
    g_autoptr(GError) err = NULL;

    if (!spTestHaveQemuImg())
        return;
    publishVersion2(f, pool);
    old = planOnto(pool, "clone.qcow2", r1, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(old->backing_path, ==, r1);
    g_assert_cmpint(old->backing_format, ==, SP_IMAGE_FORMAT_QCOW2);
    r2 = spTestCreateInstance(pool, "pc02.qcow2", "t.qcow2");
    g_assert_cmpstr(r2, !=, r1);
    made = planOnto(pool, "clone2.qcow2", r2, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(made->backing_path, ==, r2);
}


/* Another host's replica carries an identity this host cannot match:
 * while an older version is kept, which one it holds is unknown. */
static void
testOtherHostsReplicaAmbiguous(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autofree char *v1 = NULL, *r1 = NULL, *dir = NULL;
    g_autofree char *other = NULL, *expected = NULL;
    g_autoptr(SpPool) pool = poolWithInstance(f, SP_REPLICA_COPY, &v1, &r1);
    g_autoptr(SpVolumePlan) plan = NULL;
    g_autoptr(GError) err = NULL;

    if (!spTestHaveQemuImg())
        return;
    publishVersion2(f, pool);
    dir = g_path_get_dirname(r1);
    other = g_build_filename(dir, "0123456789abcdef", NULL);
    plan = planOnto(pool, "migrated.qcow2", other, &err);
    g_assert_null(plan);
    g_assert_error(err, SP_ERROR, SP_ERROR_INVALID_ARG);
    expected = g_strdup_printf("cannot tell which version of template 't.qcow2' backing "
                               "image '%s' holds: it is not a replica of its current "
                               "version, and 1 older version(s) are kept", other);
    g_assert_cmpstr(err->message, ==, expected);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* refused uploads are logged as errors, which the tests read */
    g_log_set_always_fatal(G_LOG_FATAL_MASK);

#define ADD(name, fn) \
    g_test_add("/pool-versions/" name, Fixture, NULL, spTestPoolSetUp, fn, \
               spTestPoolTearDown)
    ADD("publish", testPublish);
    ADD("wipe-recomposes", testWipeRecomposes);
    ADD("rollback", testRollback);
    ADD("wrong-uploads", testWrongUploads);
    ADD("stream-open-and-crash", testStreamOpenAndCrash);
    ADD("pinned-refused", testPinnedRefused);
    ADD("no-dependents", testNoDependents);
    ADD("status-dropped", testStatusDropped);
    ADD("ram-rebuild-from-version", testRamRebuildFromVersion);
    ADD("hot-replica-keeps-its-version", testHotReplicaKeepsItsVersion);
    ADD("older-replica-kept", testOlderReplicaKept);
    ADD("other-hosts-replica-ambiguous", testOtherHostsReplicaAmbiguous);
#undef ADD
    return g_test_run();
}
