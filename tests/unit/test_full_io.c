/*
 * test_full_io.c: reads and writes that move every byte asked for
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "util/full_io.h"
#include "test_helpers.h"

/* The kernel gives short transfers and EINTR on regular files only under
 * signals and races, so the tests make them: while set, the pread64() and
 * pwrite64() below fail with EINTR this many times and then move at most
 * mockChunk bytes a call, or nothing at all with mockZero. */
static int mockEintr;
static gsize mockChunk;
static gboolean mockZero;
static guint mockCalls;


static gsize
mockLen(gsize len)
{
    mockCalls++;
    if (mockChunk && len > mockChunk)
        return mockChunk;
    return len;
}


/* Interpose the C library's functions (with 64-bit file offsets pread and
 * pwrite are these): the executable's definitions win. */
ssize_t pread64(int fd, void *buf, size_t len, off_t offset);
ssize_t pwrite64(int fd, const void *buf, size_t len, off_t offset);

ssize_t
pread64(int fd, void *buf, size_t len, off_t offset)
{
    if (mockEintr > 0) {
        mockEintr--;
        errno = EINTR;
        return -1;
    }
    return syscall(SYS_pread64, fd, buf, mockLen(len), offset);
}


ssize_t
pwrite64(int fd, const void *buf, size_t len, off_t offset)
{
    if (mockEintr > 0) {
        mockEintr--;
        errno = EINTR;
        return -1;
    }
    if (mockZero)
        return 0;
    return syscall(SYS_pwrite64, fd, buf, mockLen(len), offset);
}


static void
mockReset(void)
{
    mockEintr = 0;
    mockChunk = 0;
    mockZero = FALSE;
    mockCalls = 0;
}


/* A file of @len patterned bytes in @dir, opened read-write. */
static int
patternFile(const char *dir, gsize len, guint8 **data)
{
    g_autofree char *path = g_build_filename(dir, "data", NULL);
    gsize i;
    int fd;

    *data = g_malloc(len);
    for (i = 0; i < len; i++)
        (*data)[i] = i * 7 + 3;
    spTestWriteAt(path, 0, *data, len);
    fd = open(path, O_RDWR | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    return fd;
}


static void
testPreadPieces(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree guint8 *data = NULL;
    g_autofree guint8 *buf = g_malloc(10000);
    g_autoptr(GError) error = NULL;
    int fd = patternFile(dir, 10000, &data);

    mockReset();
    mockEintr = 3;
    mockChunk = 7;
    g_assert_cmpint(spFullPread(fd, buf, 9000, 1000, &error, "x"), ==, 9000);
    g_assert_no_error(error);
    g_assert_true(memcmp(buf, data + 1000, 9000) == 0);
    /* 9000 / 7 rounded up, after the three interrupted calls */
    g_assert_cmpuint(mockCalls, ==, 1286);
    mockReset();
    close(fd);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testPreadEof(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree guint8 *data = NULL;
    guint8 buf[200];
    g_autoptr(GError) error = NULL;
    int fd = patternFile(dir, 100, &data);

    /* the end of file is a short count, not an error */
    g_assert_cmpint(spFullPread(fd, buf, sizeof(buf), 50, &error, "x"), ==, 50);
    g_assert_no_error(error);
    g_assert_true(memcmp(buf, data + 50, 50) == 0);

    mockChunk = 3;
    g_assert_cmpint(spFullPread(fd, buf, sizeof(buf), 0, &error, "x"), ==, 100);
    g_assert_no_error(error);
    g_assert_true(memcmp(buf, data, 100) == 0);
    mockReset();

    g_assert_cmpint(spFullPread(fd, buf, sizeof(buf), 100, &error, "x"), ==, 0);
    g_assert_cmpint(spFullPread(fd, buf, sizeof(buf), 4096, &error, "x"), ==, 0);
    g_assert_no_error(error);
    close(fd);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testPreadError(void)
{
    g_autoptr(GError) error = NULL;
    guint8 buf[16];
    int fds[2];

    /* a pipe has no offsets: ESPIPE, kept with the caller's message */
    g_assert_cmpint(pipe(fds), ==, 0);
    g_assert_cmpint(spFullPread(fds[0], buf, sizeof(buf), 0, &error,
                                "cannot read '%s'", "p"), ==, -1);
    g_assert_error(error, SP_ERROR, SP_ERROR_IO);
    g_assert_cmpint(spErrorErrno(error), ==, ESPIPE);
    g_assert_cmpstr(spErrorWhat(error), ==, "cannot read 'p'");
    g_assert_true(g_str_has_prefix(error->message, "cannot read 'p': "));
    g_clear_error(&error);
    close(fds[0]);
    close(fds[1]);

    g_assert_cmpint(spFullRead(-1, buf, sizeof(buf), &error, "r%d", 1), ==, -1);
    g_assert_cmpint(spErrorErrno(error), ==, EBADF);
    g_assert_cmpstr(spErrorWhat(error), ==, "r1");
}


static void
testPwritePieces(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autofree guint8 *data = NULL;
    g_autofree char *path = g_build_filename(dir, "data", NULL);
    g_autofree char *back = NULL;
    g_autoptr(GError) error = NULL;
    gsize len;
    int fd = patternFile(dir, 4000, &data);

    mockReset();
    mockEintr = 2;
    mockChunk = 5;
    g_assert_true(spFullPwrite(fd, data, 4000, 4000, &error, "x"));
    g_assert_no_error(error);
    g_assert_cmpuint(mockCalls, ==, 800);
    mockReset();
    close(fd);

    g_assert_true(g_file_get_contents(path, &back, &len, NULL));
    g_assert_cmpuint(len, ==, 8000);
    g_assert_true(memcmp(back + 4000, data, 4000) == 0);
    spTestTempDirFree(g_steal_pointer(&dir));
}


static void
testPwriteError(void)
{
    g_autoptr(GError) error = NULL;
    char buf[64] = { 0 };
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);

    if (fd >= 0) {
        g_assert_false(spFullPwrite(fd, buf, sizeof(buf), 0, &error,
                                    "cannot write '%s'", "full"));
        g_assert_error(error, SP_ERROR, SP_ERROR_NO_SPACE);
        g_assert_cmpint(spErrorErrno(error), ==, ENOSPC);
        g_assert_cmpstr(spErrorWhat(error), ==, "cannot write 'full'");
        g_clear_error(&error);
        close(fd);
    }

    /* a write that moves nothing is an error, not an endless loop */
    fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    mockZero = TRUE;
    g_assert_false(spFullPwrite(fd, buf, sizeof(buf), 0, &error, "zero"));
    mockReset();
    g_assert_cmpint(spErrorErrno(error), ==, EIO);
    g_clear_error(&error);
    close(fd);

    g_assert_false(spFullWrite(-1, buf, sizeof(buf), &error, "w"));
    g_assert_cmpint(spErrorErrno(error), ==, EBADF);
}


/* Writes "0123456789" into a pipe in pieces of 1, 2, 3 and 4 bytes with
 * pauses between, so that the reader sees them one at a time. */
static gpointer
pieceWriter(gpointer opaque)
{
    int fd = GPOINTER_TO_INT(opaque);
    const char *text = "0123456789";
    int piece;

    for (piece = 1; piece <= 4; piece++) {
        g_assert_cmpint(write(fd, text, piece), ==, piece);
        text += piece;
        g_usleep(20000);
    }
    close(fd);
    return NULL;
}


static void
testReadPipePieces(void)
{
    g_autoptr(GError) error = NULL;
    GThread *writer;
    char buf[16] = { 0 };
    int fds[2];

    g_assert_cmpint(pipe(fds), ==, 0);
    writer = g_thread_new("writer", pieceWriter, GINT_TO_POINTER(fds[1]));
    g_assert_cmpint(spFullRead(fds[0], buf, 6, &error, "x"), ==, 6);
    g_assert_cmpstr(buf, ==, "012345");
    /* the writer closes after 10 bytes: a short count, not an error */
    g_assert_cmpint(spFullRead(fds[0], buf, sizeof(buf), &error, "x"), ==, 4);
    g_assert_no_error(error);
    g_assert_true(memcmp(buf, "6789", 4) == 0);
    g_thread_join(writer);
    close(fds[0]);
}


typedef struct {
    int fd;
    GByteArray *got;
} PipeReader;

/* Reads the pipe 100 bytes at a time until its writer closes it. */
static gpointer
slowReader(gpointer opaque)
{
    PipeReader *r = opaque;
    guint8 buf[100];
    ssize_t n;

    while ((n = read(r->fd, buf, sizeof(buf))) > 0)
        g_byte_array_append(r->got, buf, n);
    return NULL;
}


static void
testWritePipe(void)
{
    g_autoptr(GError) error = NULL;
    g_autofree guint8 *data = g_malloc(1024 * 1024);
    PipeReader r = { -1, g_byte_array_new() };
    GThread *reader;
    gsize i;
    int fds[2];

    for (i = 0; i < 1024 * 1024; i++)
        data[i] = i % 251;
    g_assert_cmpint(pipe(fds), ==, 0);
    r.fd = fds[0];
    reader = g_thread_new("reader", slowReader, &r);
    /* far more than the pipe holds: the writes go through in parts */
    g_assert_true(spFullWrite(fds[1], data, 1024 * 1024, &error, "x"));
    g_assert_no_error(error);
    close(fds[1]);
    g_thread_join(reader);
    close(fds[0]);
    g_assert_cmpuint(r.got->len, ==, 1024 * 1024);
    g_assert_true(memcmp(r.got->data, data, 1024 * 1024) == 0);
    g_byte_array_unref(r.got);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/full-io/pread-pieces", testPreadPieces);
    g_test_add_func("/full-io/pread-eof", testPreadEof);
    g_test_add_func("/full-io/pread-error", testPreadError);
    g_test_add_func("/full-io/pwrite-pieces", testPwritePieces);
    g_test_add_func("/full-io/pwrite-error", testPwriteError);
    g_test_add_func("/full-io/read-pipe-pieces", testReadPipePieces);
    g_test_add_func("/full-io/write-pipe", testWritePipe);
    return g_test_run();
}
