/*
 * test_header_cache.c: headers of unchanged files are read once
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "image/header_cache.h"
#include "test_helpers.h"

typedef struct {
    char *dir;
    int dirfd;
} Fixture;


static void
setUp(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    f->dir = spTestTempDir();
    f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    g_assert_cmpint(f->dirfd, >=, 0);
}


static void
tearDown(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    close(f->dirfd);
    spTestTempDirFree(f->dir);
}


static gboolean
readOne(SpHeaderCache *cache, Fixture *f, const char *name, SpImageInfo *info,
        GError **error)
{
    struct stat sb;
    gboolean hit = FALSE;

    if (!spHeaderCacheRead(cache, f->dirfd, f->dir, name, &sb, info, &hit, error))
        return FALSE;
    g_assert_cmpuint(info->file_size, ==, sb.st_size);
    return hit;
}


static void
makeQcow2(Fixture *f, const char *name, const char *backing)
{
    g_autofree char *path = g_build_filename(f->dir, name, NULL);
    const char *plain[] = { "qemu-img", "create", "-q", "-f", "qcow2", path, "1M", NULL };
    const char *overlay[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-u",
                              "-b", backing, "-F", "raw", path, "1M", NULL };

    g_assert_cmpint(spTestRun(backing ? overlay : plain, NULL, NULL), ==, 0);
}


static void
testHitWhileUnchanged(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpHeaderCache) cache = spHeaderCacheNew(0);
    g_auto(SpImageInfo) first = { 0 };
    g_auto(SpImageInfo) second = { 0 };

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img is needed");
        return;
    }
    makeQcow2(f, "pc.qcow2", "/srv/hdd/base.img");
    g_assert_false(readOne(cache, f, "pc.qcow2", &first, NULL));
    g_assert_true(readOne(cache, f, "pc.qcow2", &second, NULL));
    g_assert_cmpstr(second.backing_file, ==, "/srv/hdd/base.img");
    g_assert_cmpuint(second.virtual_size, ==, first.virtual_size);
    g_assert_cmpuint(spHeaderCacheSize(cache), ==, 1);
}


/* A rewrite of the header that keeps the size and puts the mtime back
 * still changes the ctime: the cache must read the file again. */
static void
testMissAfterChange(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpHeaderCache) cache = spHeaderCacheNew(0);
    g_autofree char *path = g_build_filename(f->dir, "pc.qcow2", NULL);
    g_auto(SpImageInfo) before = { 0 };
    g_auto(SpImageInfo) after = { 0 };
    struct stat sb;
    struct timespec times[2];
    char *p;
    int fd;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img is needed");
        return;
    }
    makeQcow2(f, "pc.qcow2", "/srv/hdd/base.img");
    readOne(cache, f, "pc.qcow2", &before, NULL);
    g_assert_cmpint(stat(path, &sb), ==, 0);

    /* same length, other name: "/srv/hdd/base.img" -> "/srv/hdd/BASE.img" */
    {
        g_autofree char *buf = NULL;
        gsize len;
        g_assert_true(g_file_get_contents(path, &buf, &len, NULL));
        p = memmem(buf, len, "base.img", 8);
        g_assert_nonnull(p);
        spTestWriteAt(path, p - buf, "BASE", 4);
    }
    times[0] = sb.st_atim;
    times[1] = sb.st_mtim;
    fd = open(path, O_WRONLY);
    g_assert_cmpint(futimens(fd, times), ==, 0);
    close(fd);

    g_assert_false(readOne(cache, f, "pc.qcow2", &after, NULL));
    g_assert_cmpstr(after.backing_file, ==, "/srv/hdd/BASE.img");
}


static void
testRacyFilesNotKept(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpHeaderCache) cache = spHeaderCacheNew(SP_HEADER_CACHE_RACY_SECONDS);
    g_autofree char *path = g_build_filename(f->dir, "raw.img", NULL);
    g_auto(SpImageInfo) info = { 0 };

    g_assert_true(g_file_set_contents(path, "just written", -1, NULL));
    g_assert_false(readOne(cache, f, "raw.img", &info, NULL));
    spImageInfoClear(&info);
    g_assert_false(readOne(cache, f, "raw.img", &info, NULL));
    g_assert_cmpuint(spHeaderCacheSize(cache), ==, 0);
}


static void
testSweep(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpHeaderCache) cache = spHeaderCacheNew(0);
    g_autofree char *a = g_build_filename(f->dir, "a.img", NULL);
    g_autofree char *b = g_build_filename(f->dir, "b.img", NULL);
    g_auto(SpImageInfo) info = { 0 };

    g_assert_true(g_file_set_contents(a, "a", -1, NULL));
    g_assert_true(g_file_set_contents(b, "b", -1, NULL));
    readOne(cache, f, "a.img", &info, NULL);
    spImageInfoClear(&info);
    readOne(cache, f, "b.img", &info, NULL);
    spImageInfoClear(&info);
    spHeaderCacheSweep(cache, f->dir);
    g_assert_cmpuint(spHeaderCacheSize(cache), ==, 2);

    /* b.img goes away: the next scan does not read it, the sweep drops it */
    g_assert_cmpint(g_unlink(b), ==, 0);
    readOne(cache, f, "a.img", &info, NULL);
    spHeaderCacheSweep(cache, f->dir);
    g_assert_cmpuint(spHeaderCacheSize(cache), ==, 1);
    /* entries of other directories are left alone */
    spHeaderCacheSweep(cache, "/elsewhere");
    g_assert_cmpuint(spHeaderCacheSize(cache), ==, 1);
}


static void
testRefused(Fixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_autoptr(SpHeaderCache) cache = spHeaderCacheNew(0);
    g_autofree char *link = g_build_filename(f->dir, "link.img", NULL);
    g_autofree char *sub = g_build_filename(f->dir, "sub", NULL);
    g_autoptr(GError) error = NULL;
    SpImageInfo info = { 0 };

    g_assert_cmpint(symlink("/etc/passwd", link), ==, 0);
    g_assert_cmpint(g_mkdir(sub, 0700), ==, 0);

    g_assert_false(readOne(cache, f, "link.img", &info, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE);
    g_assert_nonnull(strstr(error->message, "symbolic link"));
    g_clear_error(&error);
    g_assert_false(readOne(cache, f, "sub", &info, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE);
    g_clear_error(&error);
    g_assert_false(readOne(cache, f, "missing.img", &info, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_NOT_FOUND);
}


#define ADD(path, func) g_test_add(path, Fixture, NULL, setUp, func, tearDown)

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    ADD("/header-cache/hit-while-unchanged", testHitWhileUnchanged);
    ADD("/header-cache/miss-after-change", testMissAfterChange);
    ADD("/header-cache/racy-files-not-kept", testRacyFilesNotKept);
    ADD("/header-cache/sweep", testSweep);
    ADD("/header-cache/refused", testRefused);
    return g_test_run();
}
