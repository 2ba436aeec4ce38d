/*
 * test_image_lock.c: detecting images held open by QEMU
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "fs/image_lock.h"
#include "test_helpers.h"

static gboolean
inUse(const char *path)
{
    g_autoptr(GError) error = NULL;
    gboolean in_use = TRUE;

    g_assert_true(spImageInUse(path, &in_use, &error));
    g_assert_no_error(error);
    return in_use;
}


static gboolean
hasWriter(const char *path)
{
    g_autoptr(GError) error = NULL;
    gboolean has_writer = TRUE;

    g_assert_true(spImageHasWriter(path, &has_writer, &error));
    g_assert_no_error(error);
    return has_writer;
}


static void
lockByte(int fd, short type, off_t offset)
{
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET,
                        .l_start = offset, .l_len = 1 };

    g_assert_cmpint(fcntl(fd, F_OFD_SETLK, &fl), ==, 0);
}


/* A 1 MiB qcow2 image in a new temporary directory (@dir). */
static char *
makeImage(char **dir)
{
    char *img;

    *dir = spTestTempDir();
    img = g_build_filename(*dir, "img.qcow2", NULL);
    {
        const char *mk[] = { "qemu-img", "create", "-q", "-f", "qcow2", img, "1M", NULL };
        g_assert_cmpint(spTestRun(mk, NULL, NULL), ==, 0);
    }
    return img;
}


static void
assertLockRefused(const char *path)
{
    g_autoptr(GError) error = NULL;

    g_assert_cmpint(spImageLockExclusive(path, &error), ==, -1);
    g_assert_error(error, SP_ERROR, SP_ERROR_IN_USE);
}


static void
testOfdLocks(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "img", NULL);
    int fd;

    g_assert_true(g_file_set_contents(path, "data", -1, NULL));
    g_assert_false(inUse(path));

    /* another open file description, as QEMU would hold it */
    fd = open(path, O_RDWR);
    g_assert_cmpint(fd, >=, 0);
    lockByte(fd, F_RDLCK, 100);
    g_assert_true(inUse(path));
    g_assert_false(hasWriter(path));
    lockByte(fd, F_RDLCK, 101);
    g_assert_true(hasWriter(path));
    lockByte(fd, F_UNLCK, 101);
    lockByte(fd, F_UNLCK, 100);
    g_assert_false(inUse(path));

    lockByte(fd, F_RDLCK, 299);
    g_assert_true(inUse(path));
    lockByte(fd, F_UNLCK, 299);

    /* bytes outside QEMU's span are not image locks */
    lockByte(fd, F_WRLCK, 99);
    lockByte(fd, F_WRLCK, 300);
    g_assert_false(inUse(path));
    close(fd);
    g_assert_false(inUse(path));
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testQemuIo(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *base = NULL;
    g_autofree char *overlay = NULL;
    GPid pid;
    int i;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img and qemu-io are needed");
        return;
    }
    dir = spTestTempDir();
    base = g_build_filename(dir, "base.qcow2", NULL);
    overlay = g_build_filename(dir, "overlay.qcow2", NULL);
    {
        const char *mkbase[] = { "qemu-img", "create", "-q", "-f", "qcow2", base, "1M", NULL };
        const char *mkoverlay[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", base,
                                    "-F", "qcow2", overlay, NULL };
        g_assert_cmpint(spTestRun(mkbase, NULL, NULL), ==, 0);
        g_assert_cmpint(spTestRun(mkoverlay, NULL, NULL), ==, 0);
    }
    {
        const char *argv[] = { "qemu-io", "-f", "qcow2", "-c", "sleep 20000", overlay, NULL };
        g_autoptr(GError) error = NULL;
        g_assert_true(g_spawn_async(NULL, (char **) argv, NULL,
                                    G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                    G_SPAWN_STDOUT_TO_DEV_NULL,
                                    NULL, NULL, &pid, &error));
    }
    /* qemu-io locks the overlay, then opens and locks its backing file */
    for (i = 0; i < 200 && !(inUse(overlay) && inUse(base)); i++)
        g_usleep(25 * 1000);
    /* qemu-io holds the overlay for writing and its backing file for reading */
    g_assert_true(inUse(overlay));
    g_assert_true(inUse(base));
    g_assert_true(hasWriter(overlay));
    g_assert_false(hasWriter(base));
    assertLockRefused(overlay);
    assertLockRefused(base);

    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    g_spawn_close_pid(pid);
    g_assert_false(inUse(overlay));
    g_assert_false(inUse(base));
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* While we hold the lock, QEMU itself refuses to open the image. */
static void
testExclusiveKeepsQemuOut(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *img = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *err = NULL;
    int fd;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img and qemu-io are needed");
        return;
    }
    img = makeImage(&dir);
    fd = spImageLockExclusive(img, &error);
    g_assert_no_error(error);
    g_assert_cmpint(fd, >=, 0);
    {
        const char *io[] = { "qemu-io", "-f", "qcow2", "-c", "read 0 512", img, NULL };
        g_assert_cmpint(spTestRun(io, NULL, &err), !=, 0);
        g_assert_nonnull(strstr(err, "lock"));
    }
    close(fd);
    {
        const char *io[] = { "qemu-io", "-f", "qcow2", "-c", "read 0 512", img, NULL };
        g_autofree char *out = NULL;
        g_assert_cmpint(spTestRun(io, &out, NULL), ==, 0);
    }
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* Held as a backing file: QEMU may still read the image, but neither
 * write nor resize it; and a writer already there makes the lock fail. */
static void
testReaderKeepsWritersOut(void)
{
    g_autofree char *dir = NULL;
    g_autofree char *img = NULL;
    g_autoptr(GError) error = NULL;
    int fd;
    int writer;

    if (!spTestHaveQemuImg()) {
        g_test_skip("qemu-img and qemu-io are needed");
        return;
    }
    img = makeImage(&dir);
    fd = spImageLockReader(img, &error);
    g_assert_no_error(error);
    g_assert_cmpint(fd, >=, 0);
    g_assert_true(inUse(img));
    g_assert_false(hasWriter(img));
    {
        const char *ro[] = { "qemu-io", "-r", "-f", "qcow2", "-c", "read 0 512", img, NULL };
        const char *rw[] = { "qemu-io", "-f", "qcow2", "-c", "write 0 512", img, NULL };
        const char *grow[] = { "qemu-img", "resize", "-q", "-f", "qcow2", img, "2M", NULL };
        g_autofree char *out = NULL;
        g_autofree char *err1 = NULL;
        g_autofree char *err2 = NULL;

        g_assert_cmpint(spTestRun(ro, &out, NULL), ==, 0);
        g_assert_cmpint(spTestRun(rw, NULL, &err1), !=, 0);
        g_assert_nonnull(strstr(err1, "lock"));
        g_assert_cmpint(spTestRun(grow, NULL, &err2), !=, 0);
        g_assert_nonnull(strstr(err2, "lock"));
    }
    /* a second reader is welcome, an exclusive holder is not */
    writer = spImageLockReader(img, &error);
    g_assert_no_error(error);
    g_assert_cmpint(writer, >=, 0);
    close(writer);
    assertLockRefused(img);
    close(fd);

    /* someone holding QEMU's write, then resize permission byte; one
     * holding only write-unchanged (102) is welcome */
    writer = open(img, O_RDWR);
    g_assert_cmpint(writer, >=, 0);
    lockByte(writer, F_RDLCK, 101);
    g_assert_cmpint(spImageLockReader(img, &error), ==, -1);
    g_assert_error(error, SP_ERROR, SP_ERROR_IN_USE);
    g_clear_error(&error);
    lockByte(writer, F_UNLCK, 101);
    lockByte(writer, F_RDLCK, 103);
    g_assert_cmpint(spImageLockReader(img, &error), ==, -1);
    g_assert_error(error, SP_ERROR, SP_ERROR_IN_USE);
    g_clear_error(&error);
    lockByte(writer, F_UNLCK, 103);
    lockByte(writer, F_RDLCK, 102);
    fd = spImageLockReader(img, &error);
    g_assert_no_error(error);
    g_assert_cmpint(fd, >=, 0);
    close(fd);
    close(writer);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testMissing(void)
{
    g_autoptr(GError) error = NULL;
    gboolean in_use;

    g_assert_false(spImageInUse("/nonexistent/stormpool.qcow2", &in_use, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_NOT_FOUND);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/image-lock/ofd-locks", testOfdLocks);
    g_test_add_func("/image-lock/reader-keeps-writers-out", testReaderKeepsWritersOut);
    g_test_add_func("/image-lock/qemu-io", testQemuIo);
    g_test_add_func("/image-lock/exclusive-keeps-qemu-out", testExclusiveKeepsQemuOut);
    g_test_add_func("/image-lock/missing", testMissing);
    return g_test_run();
}
