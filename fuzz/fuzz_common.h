/*
 * fuzz_common.h: what the libFuzzer targets of stormpool share
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every target is deterministic (no clock, no randomness, the same scratch
 * files each run) and frees what it allocates: libFuzzer runs
 * LeakSanitizer after each input that allocates more than it frees.
 */

#pragma once

#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image/hot_set.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A warning or critical from glib while parsing untrusted input is a bug
 * as well (a g_return_if_fail() hit, a bad escape logged): abort, so that
 * libFuzzer reports it with the input. (glib's own fatal messages end in a
 * breakpoint trap, which libFuzzer does not catch.) The parsers themselves
 * never log. */
static GLogWriterOutput
fuzzLogWriter(GLogLevelFlags level, const GLogField *fields, gsize n_fields,
              gpointer data)
{
    g_log_writer_standard_streams(level, fields, n_fields, data);
    if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
        abort();
    return G_LOG_WRITER_HANDLED;
}


static inline void
fuzzSetup(void)
{
    g_log_set_writer_func(fuzzLogWriter, NULL, NULL);
}


/* An anonymous file for parsers that take an fd, or a path: /proc/self/fd/N
 * (for those that follow symlinks). */
static inline int
fuzzMemfd(const char *name)
{
    int fd = memfd_create(name, MFD_CLOEXEC);

    if (fd < 0)
        g_error("memfd_create: %s", g_strerror(errno));
    return fd;
}


/* Make the file open on @fd hold exactly @data. */
static inline void
fuzzFill(int fd, const uint8_t *data, size_t size)
{
    size_t done = 0;

    if (ftruncate(fd, 0) < 0)
        g_error("ftruncate: %s", g_strerror(errno));
    while (done < size) {
        ssize_t n = pwrite(fd, data + done, size - done, done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            g_error("pwrite: %s", g_strerror(errno));
        done += n;
    }
}


static char *fuzzDirPath;

static inline void
fuzzDirRemove(void)
{
    g_autoptr(GDir) dir = g_dir_open(fuzzDirPath, 0, NULL);
    const char *name;

    while (dir && (name = g_dir_read_name(dir))) {
        g_autofree char *path = g_build_filename(fuzzDirPath, name, NULL);

        g_unlink(path);
    }
    g_rmdir(fuzzDirPath);
}


/* A scratch directory of this process, for parsers that only take a path
 * they open with O_NOFOLLOW (so /proc/self/fd/N will not do) and writers
 * that replace a file atomically. On tmpfs when there is one, since the
 * writers fsync. Removed at exit (not after a crash). */
static inline const char *
fuzzDir(void)
{
    const char *top = g_getenv("STORMPOOL_FUZZ_TMPDIR");

    if (fuzzDirPath)
        return fuzzDirPath;
    if (!top)
        top = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) &&
              access("/dev/shm", W_OK) == 0 ? "/dev/shm" : g_get_tmp_dir();
    fuzzDirPath = g_strdup_printf("%s/stormpool-fuzz-%d", top, (int) getpid());
    if (g_mkdir(fuzzDirPath, 0700) < 0 && errno != EEXIST)
        g_error("mkdir %s: %s", fuzzDirPath, g_strerror(errno));
    atexit(fuzzDirRemove);
    return fuzzDirPath;
}


/* The promises of hot_set.h about any set it hands out: sorted, disjoint,
 * non-adjacent, non-empty ranges below the virtual size. */
static inline void
fuzzCheckHotSet(const SpHotSet *set)
{
    guint count;
    const SpRange *r = spHotSetRanges(set, &count);
    guint64 vsize = spHotSetVirtualSize(set);
    guint64 bytes = 0;
    guint i;

    for (i = 0; i < count; i++) {
        g_assert_cmpuint(r[i].length, >, 0);
        g_assert_cmpuint(r[i].offset, <, vsize);
        g_assert_cmpuint(r[i].length, <=, vsize - r[i].offset);
        if (i > 0)
            g_assert_cmpuint(r[i].offset, >, r[i - 1].offset + r[i - 1].length);
        bytes += r[i].length;
    }
    g_assert_cmpuint(bytes, ==, spHotSetBytes(set));
}
