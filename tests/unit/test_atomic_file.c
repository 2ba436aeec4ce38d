/*
 * test_atomic_file.c: unit tests of the all-or-nothing file creation
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/atomic_file.h"
#include "stormpool/error.h"
#include "test_helpers.h"

/* Set to make renameat2() fail like a file system without
 * RENAME_NOREPLACE, so that the link()+unlink() fallback runs. */
static int mockRenameat2Errno;


/* Interposes the C library's renameat2(): the executable's definition
 * wins over the shared library's. */
int
renameat2(int olddirfd, const char *oldpath,
          int newdirfd, const char *newpath, unsigned int flags)
{
    if (mockRenameat2Errno) {
        errno = mockRenameat2Errno;
        return -1;
    }
    return syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}


static guint
countEntries(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    guint n = 0;

    g_assert_nonnull(d);
    while (g_dir_read_name(d))
        n++;
    return n;
}


static guint
countTmpEntries(const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *name;
    guint n = 0;

    g_assert_nonnull(d);
    while ((name = g_dir_read_name(d))) {
        if (g_str_has_prefix(name, SP_ATOMIC_FILE_TMP_PREFIX))
            n++;
    }
    return n;
}


static void
writeAll(int fd, const char *text)
{
    g_assert_cmpint(write(fd, text, strlen(text)), ==, (gssize) strlen(text));
}


static void
assertContent(const char *path, const char *expected)
{
    g_autofree char *content = NULL;

    g_assert_true(g_file_get_contents(path, &content, NULL, NULL));
    g_assert_cmpstr(content, ==, expected);
}


/* Begin, write @text and commit; returns the commit result. */
static gboolean
createFile(const char *path, mode_t mode, const char *text,
           gboolean replace, GError **error)
{
    g_autoptr(SpAtomicFile) file = spAtomicFileBegin(path, mode, error);

    if (!file)
        return FALSE;
    writeAll(spAtomicFileFd(file), text);
    return spAtomicFileCommit(file, replace, error);
}


static void
testCommitMode(void)
{
    static const mode_t modes[] = { 0600, 0640, 0644, 0666, 0444, 0755 };
    g_autofree char *dir = spTestTempDir();
    mode_t old_umask = umask(0077);
    size_t i;

    /* A umask of 077 would strip every group and other bit. */
    for (i = 0; i < G_N_ELEMENTS(modes); i++) {
        g_autoptr(GError) error = NULL;
        g_autofree char *name = g_strdup_printf("vol-%04o", modes[i]);
        g_autofree char *path = g_build_filename(dir, name, NULL);
        GStatBuf st;

        g_assert_true(createFile(path, modes[i], "data", FALSE, &error));
        g_assert_no_error(error);
        g_assert_cmpint(g_lstat(path, &st), ==, 0);
        g_assert_true(S_ISREG(st.st_mode));
        g_assert_cmpint(st.st_mode & 07777, ==, modes[i]);
        assertContent(path, "data");
    }
    umask(old_umask);
    g_assert_cmpuint(countEntries(dir), ==, G_N_ELEMENTS(modes));
    g_assert_cmpuint(countTmpEntries(dir), ==, 0);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testTmpName(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "vol.qcow2", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(SpAtomicFile) a = spAtomicFileBegin(path, 0600, &error);
    g_autoptr(SpAtomicFile) b = NULL;
    g_autofree char *a_dir = NULL;
    g_autofree char *a_name = NULL;
    g_autofree char *prefix = g_strconcat(SP_ATOMIC_FILE_TMP_PREFIX,
                                          "vol.qcow2-", NULL);

    g_assert_no_error(error);
    b = spAtomicFileBegin(path, 0600, &error);
    g_assert_no_error(error);

    a_dir = g_path_get_dirname(spAtomicFileTmpPath(a));
    a_name = g_path_get_basename(spAtomicFileTmpPath(a));
    g_assert_cmpstr(a_dir, ==, dir);
    g_assert_true(g_str_has_prefix(a_name, prefix));
    g_assert_cmpuint(strlen(a_name), ==, strlen(prefix) + 6);
    g_assert_true(spAtomicFileIsTmpName(a_name));
    g_assert_cmpstr(spAtomicFileTmpPath(a), !=, spAtomicFileTmpPath(b));
    g_assert_true(g_file_test(spAtomicFileTmpPath(a), G_FILE_TEST_IS_REGULAR));
    g_assert_cmpint(spAtomicFileFd(a), >=, 0);
    g_assert_cmpint(spAtomicFileFd(a), !=, spAtomicFileFd(b));
    g_assert_cmpuint(countTmpEntries(dir), ==, 2);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));

    g_clear_pointer(&a, spAtomicFileFree);
    g_clear_pointer(&b, spAtomicFileFree);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testNoTmpAfterCommit(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "vol", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(SpAtomicFile) file = spAtomicFileBegin(path, 0600, &error);
    g_autofree char *tmp = NULL;

    g_assert_no_error(error);
    tmp = g_strdup(spAtomicFileTmpPath(file));
    writeAll(spAtomicFileFd(file), "complete");
    g_assert_true(spAtomicFileCommit(file, FALSE, &error));
    g_assert_no_error(error);
    g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
    g_clear_pointer(&file, spAtomicFileFree);

    assertContent(path, "complete");
    g_assert_cmpuint(countEntries(dir), ==, 1);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testFreeWithoutCommit(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "vol", NULL);
    g_autoptr(GError) error = NULL;
    SpAtomicFile *file = spAtomicFileBegin(path, 0600, &error);
    g_autofree char *tmp = NULL;

    g_assert_no_error(error);
    tmp = g_strdup(spAtomicFileTmpPath(file));
    writeAll(spAtomicFileFd(file), "abandoned");
    g_assert_true(g_file_test(tmp, G_FILE_TEST_IS_REGULAR));

    spAtomicFileFree(file);
    spAtomicFileFree(NULL);
    g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    g_assert_cmpuint(countEntries(dir), ==, 0);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
assertNoReplace(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "vol", NULL);
    g_autoptr(GError) error = NULL;

    g_assert_true(g_file_set_contents(path, "original", -1, NULL));
    g_assert_false(createFile(path, 0600, "intruder", FALSE, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_EXISTS);
    g_assert_nonnull(strstr(error->message, path));
    assertContent(path, "original");
    g_assert_cmpuint(countEntries(dir), ==, 1);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testNoReplace(void)
{
    assertNoReplace();
}


/* The same through link()+unlink(), for file systems that reject
 * RENAME_NOREPLACE with EINVAL or old kernels without renameat2. */
static void
testNoReplaceFallback(void)
{
    static const int errnos[] = { EINVAL, ENOSYS };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(errnos); i++) {
        g_autofree char *dir = spTestTempDir();
        g_autofree char *path = g_build_filename(dir, "vol", NULL);
        g_autoptr(GError) error = NULL;
        GStatBuf st;

        mockRenameat2Errno = errnos[i];
        assertNoReplace();

        g_assert_true(createFile(path, 0640, "linked", FALSE, &error));
        g_assert_no_error(error);
        assertContent(path, "linked");
        g_assert_cmpint(g_stat(path, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 07777, ==, 0640);
        g_assert_cmpuint(st.st_nlink, ==, 1);
        g_assert_cmpuint(countEntries(dir), ==, 1);
        mockRenameat2Errno = 0;
        spTestTempDirFree(g_steal_pointer(&dir));
    }
}


/* A failed commit reports the target and leaves nothing behind. */
static void
testCommitFailure(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "vol", NULL);
    g_autoptr(GError) error = NULL;

    mockRenameat2Errno = EPERM;
    g_assert_false(createFile(path, 0600, "data", FALSE, &error));
    mockRenameat2Errno = 0;
    g_assert_error(error, SP_ERROR, SP_ERROR_IO);
    g_assert_nonnull(strstr(error->message, path));
    g_assert_nonnull(strstr(error->message, g_strerror(EPERM)));
    g_assert_cmpuint(countEntries(dir), ==, 0);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testReplace(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "vol", NULL);
    g_autoptr(GError) error = NULL;
    GStatBuf st;

    g_assert_true(g_file_set_contents(path, "original", -1, NULL));
    g_assert_true(createFile(path, 0640, "replacement", TRUE, &error));
    g_assert_no_error(error);
    assertContent(path, "replacement");
    g_assert_cmpint(g_stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0640);
    g_assert_cmpuint(countEntries(dir), ==, 1);

    /* Replacing where nothing exists yet is fine too. */
    g_clear_pointer(&path, g_free);
    path = g_build_filename(dir, "new", NULL);
    g_assert_true(createFile(path, 0600, "fresh", TRUE, &error));
    g_assert_no_error(error);
    assertContent(path, "fresh");
    g_assert_cmpuint(countEntries(dir), ==, 2);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testMissingDirectory(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "missing", "vol", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(SpAtomicFile) file = spAtomicFileBegin(path, 0600, &error);

    g_assert_null(file);
    g_assert_error(error, SP_ERROR, SP_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, path));
    g_assert_nonnull(strstr(error->message, g_strerror(ENOENT)));
    g_assert_cmpuint(countEntries(dir), ==, 0);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testNotAFileName(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *slash = g_strconcat(dir, "/", NULL);
    g_autofree char *dot = g_build_filename(dir, ".", NULL);
    g_autofree char *dotdot = g_build_filename(dir, "..", NULL);
    const char *paths[] = { slash, dot, dotdot, "", "/" };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(paths); i++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(SpAtomicFile) file = spAtomicFileBegin(paths[i], 0600,
                                                         &error);

        g_assert_null(file);
        g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    }
    g_assert_cmpuint(countEntries(dir), ==, 0);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testDanglingSymlink(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "vol", NULL);
    g_autofree char *victim = g_build_filename(dir, "victim", NULL);
    g_autoptr(GError) error = NULL;
    GStatBuf st;

    g_assert_cmpint(symlink(victim, path), ==, 0);

    g_assert_false(createFile(path, 0600, "data", FALSE, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_EXISTS);
    g_assert_false(g_file_test(victim, G_FILE_TEST_EXISTS));
    g_assert_cmpint(g_lstat(path, &st), ==, 0);
    g_assert_true(S_ISLNK(st.st_mode));
    g_assert_cmpuint(countEntries(dir), ==, 1);
    g_clear_error(&error);

    /* Replacing swaps out the link itself. */
    g_assert_true(createFile(path, 0600, "data", TRUE, &error));
    g_assert_no_error(error);
    g_assert_false(g_file_test(victim, G_FILE_TEST_EXISTS));
    g_assert_cmpint(g_lstat(path, &st), ==, 0);
    g_assert_true(S_ISREG(st.st_mode));
    assertContent(path, "data");
    g_assert_cmpuint(countEntries(dir), ==, 1);
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* A name near NAME_MAX still works: the temporary name shortens it. */
static void
testLongName(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *name = g_strnfill(NAME_MAX, 'v');
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(SpAtomicFile) file = spAtomicFileBegin(path, 0600, &error);
    g_autofree char *tmp_name = NULL;

    g_assert_no_error(error);
    tmp_name = g_path_get_basename(spAtomicFileTmpPath(file));
    g_assert_cmpuint(strlen(tmp_name), <=, NAME_MAX);
    g_assert_true(spAtomicFileIsTmpName(tmp_name));
    writeAll(spAtomicFileFd(file), "long");
    g_assert_true(spAtomicFileCommit(file, FALSE, &error));
    g_assert_no_error(error);
    assertContent(path, "long");
    g_assert_cmpuint(countEntries(dir), ==, 1);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testIsTmpName(void)
{
    static const char *yes[] = {
        SP_ATOMIC_FILE_TMP_PREFIX "vol.qcow2-a1B2c3",
        SP_ATOMIC_FILE_TMP_PREFIX "-ZZZZZZ",
        SP_ATOMIC_FILE_TMP_PREFIX "x-y-000000",
    };
    static const char *no[] = {
        "",
        "vol.qcow2",
        "vol.qcow2-a1B2c3",
        ".stormpool-tmp",
        SP_ATOMIC_FILE_TMP_PREFIX,
        SP_ATOMIC_FILE_TMP_PREFIX "vol",
        SP_ATOMIC_FILE_TMP_PREFIX "vol-abc",
        SP_ATOMIC_FILE_TMP_PREFIX "vol-abcdefg",
        SP_ATOMIC_FILE_TMP_PREFIX "vol_abcdef",
        SP_ATOMIC_FILE_TMP_PREFIX "vol-abc.ef",
        "x" SP_ATOMIC_FILE_TMP_PREFIX "vol-abcdef",
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(yes); i++)
        g_assert_true(spAtomicFileIsTmpName(yes[i]));
    for (i = 0; i < G_N_ELEMENTS(no); i++)
        g_assert_false(spAtomicFileIsTmpName(no[i]));
    g_assert_false(spAtomicFileIsTmpName(NULL));
}


/* A refresh removes a stale temporary file, but not one being written:
 * its writer holds the lock until the rename, whatever process (or host,
 * on a shared file system) tries. */
static void
testRemoveStale(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree char *path = g_build_filename(dir, "vol.img", NULL);
    g_autofree char *stale = g_build_filename(dir, ".stormpool-tmp-old.img-Ab12Cd", NULL);
    g_autoptr(SpAtomicFile) file = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *tmp_name = NULL;
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY);

    g_assert_cmpint(dir_fd, >=, 0);
    g_assert_true(g_file_set_contents(stale, "", -1, NULL));
    g_assert_cmpint(spAtomicFileRemoveStale(dir_fd, ".stormpool-tmp-old.img-Ab12Cd"), ==, 0);
    g_assert_false(g_file_test(stale, G_FILE_TEST_EXISTS));

    file = spAtomicFileBegin(path, 0644, &err);
    g_assert_no_error(err);
    tmp_name = g_path_get_basename(spAtomicFileTmpPath(file));
    g_assert_cmpint(spAtomicFileRemoveStale(dir_fd, tmp_name), ==, -1);
    g_assert_cmpint(errno, ==, EBUSY);
    g_assert_true(spAtomicFileCommit(file, FALSE, &err));
    g_assert_no_error(err);
    g_assert_cmpint(spAtomicFileRemoveStale(dir_fd, tmp_name), ==, -1);
    g_assert_cmpint(errno, ==, ENOENT);
    g_assert_true(g_file_test(path, G_FILE_TEST_IS_REGULAR));
    close(dir_fd);
    g_assert_cmpint(unlink(path), ==, 0);
    spTestTempDirFree(g_steal_pointer(&dir));
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/atomic-file/commit-mode", testCommitMode);
    g_test_add_func("/atomic-file/tmp-name", testTmpName);
    g_test_add_func("/atomic-file/no-tmp-after-commit", testNoTmpAfterCommit);
    g_test_add_func("/atomic-file/free-without-commit", testFreeWithoutCommit);
    g_test_add_func("/atomic-file/no-replace", testNoReplace);
    g_test_add_func("/atomic-file/no-replace-fallback", testNoReplaceFallback);
    g_test_add_func("/atomic-file/commit-failure", testCommitFailure);
    g_test_add_func("/atomic-file/replace", testReplace);
    g_test_add_func("/atomic-file/missing-directory", testMissingDirectory);
    g_test_add_func("/atomic-file/not-a-file-name", testNotAFileName);
    g_test_add_func("/atomic-file/dangling-symlink", testDanglingSymlink);
    g_test_add_func("/atomic-file/long-name", testLongName);
    g_test_add_func("/atomic-file/is-tmp-name", testIsTmpName);
    g_test_add_func("/atomic-file/remove-stale", testRemoveStale);

    return g_test_run();
}
