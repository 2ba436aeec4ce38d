/*
 * test_file_copy.c: sparse copies of image files
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "util/file_copy.h"
#include "test_helpers.h"

#define MiB (1024 * 1024)

static void
copyAndCompare(const char *dir, const char *src)
{
    g_autofree char *dst = g_build_filename(dir, "copy", NULL);
    g_autofree char *a = NULL;
    g_autofree char *b = NULL;
    g_autoptr(GError) error = NULL;
    gsize alen, blen;
    struct stat sa, sb;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

    g_assert_cmpint(in, >=, 0);
    g_assert_cmpint(out, >=, 0);
    g_assert_true(spFileCopySparse(in, out, &error));
    g_assert_no_error(error);
    close(in);
    close(out);

    g_assert_true(g_file_get_contents(src, &a, &alen, NULL));
    g_assert_true(g_file_get_contents(dst, &b, &blen, NULL));
    g_assert_cmpuint(alen, ==, blen);
    g_assert_true(memcmp(a, b, alen) == 0);

    g_assert_cmpint(stat(src, &sa), ==, 0);
    g_assert_cmpint(stat(dst, &sb), ==, 0);
    /* holes stay holes: the copy uses no more blocks than the original
     * plus one file system block of rounding per extent */
    g_assert_cmpint(sb.st_blocks, <=, sa.st_blocks + 64);
    g_unlink(dst);
}


static void
testSparse(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *src = g_build_filename(dir, "src", NULL);
    char data[4096];
    int fd;

    memset(data, 0x5a, sizeof(data));
    spTestWriteAt(src, 0, data, sizeof(data));
    spTestWriteAt(src, 8 * MiB, data, sizeof(data));
    spTestWriteAt(src, 64 * MiB + 123, data, 100);
    fd = open(src, O_WRONLY);
    g_assert_cmpint(ftruncate(fd, 128 * MiB), ==, 0);
    close(fd);

    copyAndCompare(dir, src);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testEmptyAndDense(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *empty = g_build_filename(dir, "empty", NULL);
    g_autofree char *dense = g_build_filename(dir, "dense", NULL);
    g_autofree char *data = g_malloc(3 * MiB + 7);
    gsize i;

    g_assert_true(g_file_set_contents(empty, "", 0, NULL));
    copyAndCompare(dir, empty);

    for (i = 0; i < 3 * MiB + 7; i++)
        data[i] = (char) (i * 7);
    g_assert_true(g_file_set_contents(dense, data, 3 * MiB + 7, NULL));
    copyAndCompare(dir, dense);
    spTestTempDirFree(g_steal_pointer(&dir));
}


typedef struct {
    guint calls;
    guint64 last;
    guint64 total;
    guint stop_after;       /* calls; 0: never stop */
} ProgressSeen;


static gboolean
recordProgress(guint64 done, guint64 total, gpointer opaque)
{
    ProgressSeen *seen = opaque;

    g_assert_cmpuint(done, >=, seen->last);
    g_assert_cmpuint(done, <=, total);
    seen->calls++;
    seen->last = done;
    seen->total = total;
    return seen->stop_after == 0 || seen->calls < seen->stop_after;
}


static void
testProgress(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *src = g_build_filename(dir, "src", NULL);
    g_autofree char *dst = g_build_filename(dir, "dst", NULL);
    g_autoptr(GError) error = NULL;
    g_autofree char *data = g_malloc0(3 * 64 * MiB / 2);
    ProgressSeen seen = { 0 };
    int in, out;

    /* one 96 MiB extent (two chunks), a hole, a small extent */
    memset(data, 0x11, 3 * 64 * MiB / 2);
    spTestWriteAt(src, 0, data, 3 * 64 * MiB / 2);
    spTestWriteAt(src, 300 * MiB, "x", 1);

    in = open(src, O_RDONLY | O_CLOEXEC);
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    g_assert_true(spFileCopySparseProgress(in, out, recordProgress, &seen, &error));
    g_assert_no_error(error);
    close(in);
    close(out);

    g_assert_cmpuint(seen.calls, >=, 3);
    g_assert_cmpuint(seen.last, ==, 300 * MiB + 1);
    g_assert_cmpuint(seen.total, ==, 300 * MiB + 1);
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* The callback says stop: the copy ends there with SP_ERROR_CANCELLED. */
static void
testCancel(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *src = g_build_filename(dir, "src", NULL);
    g_autofree char *dst = g_build_filename(dir, "dst", NULL);
    g_autoptr(GError) error = NULL;
    g_autofree char *data = g_malloc0(3 * 64 * MiB / 2);
    ProgressSeen seen = { .stop_after = 1 };
    struct stat sb;
    int in, out;

    memset(data, 0x22, 3 * 64 * MiB / 2);
    spTestWriteAt(src, 0, data, 3 * 64 * MiB / 2);
    in = open(src, O_RDONLY | O_CLOEXEC);
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    g_assert_false(spFileCopySparseProgress(in, out, recordProgress, &seen, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_CANCELLED);
    g_assert_cmpint(fstat(out, &sb), ==, 0);
    close(in);
    close(out);
    g_assert_cmpuint(seen.calls, ==, 1);
    g_assert_cmpuint(sb.st_size, ==, 64 * MiB);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testBadFd(void)
{
    g_autoptr(GError) error = NULL;

    g_assert_false(spFileCopySparse(-1, -1, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_IO);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/file-copy/sparse", testSparse);
    g_test_add_func("/file-copy/empty-and-dense", testEmptyAndDense);
    g_test_add_func("/file-copy/progress", testProgress);
    g_test_add_func("/file-copy/cancel", testCancel);
    g_test_add_func("/file-copy/bad-fd", testBadFd);
    return g_test_run();
}
