/*
 * test_process.c: running helper programs, judged by their exit status
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "stormpool/error.h"
#include "util/process.h"
#include "test_helpers.h"

static void
testTrue(void)
{
    const char *argv[] = { "true", NULL };
    g_autoptr(GError) error = NULL;
    g_autofree char *out = NULL;

    g_assert_true(spProcessRun(argv, NULL, &error));
    g_assert_no_error(error);
    g_assert_true(spProcessRun(argv, &out, &error));
    g_assert_cmpstr(out, ==, "");
}


static void
testFalse(void)
{
    const char *argv[] = { "false", NULL };
    g_autoptr(GError) error = NULL;

    /* silent: the message says how it ended */
    g_assert_false(spProcessRun(argv, NULL, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_IO);
    g_assert_cmpstr(error->message, ==, "Child process exited with code 1");
}


static void
testStderr(void)
{
    const char *argv[] = { "sh", "-c", "echo out; echo '  it broke ' >&2; exit 3", NULL };
    g_autoptr(GError) error = NULL;
    g_autofree char *out = NULL;

    g_assert_false(spProcessRun(argv, &out, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_IO);
    g_assert_cmpstr(error->message, ==, "it broke");
    /* the output is there after a failure too, untouched */
    g_assert_cmpstr(out, ==, "out\n");
}


static void
testStdoutFallback(void)
{
    const char *argv[] = { "sh", "-c", "echo 'read failed: Input/output error'; exit 1", NULL };
    g_autoptr(GError) error = NULL;
    g_autofree char *out = NULL;

    /* with stdout captured and stderr empty, stdout is the complaint */
    g_assert_false(spProcessRun(argv, &out, &error));
    g_assert_cmpstr(error->message, ==, "read failed: Input/output error");
    g_clear_error(&error);
    /* without, it went to /dev/null */
    g_assert_false(spProcessRun(argv, NULL, &error));
    g_assert_cmpstr(error->message, ==, "Child process exited with code 1");
}


static void
testExitStatusDecides(void)
{
    const char *argv[] = { "sh", "-c", "echo warning: error ahead >&2; echo failed; exit 0",
                           NULL };
    g_autoptr(GError) error = NULL;
    g_autofree char *out = NULL;

    g_assert_true(spProcessRun(argv, &out, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(out, ==, "failed\n");
}


static void
testSignal(void)
{
    const char *argv[] = { "sh", "-c", "kill -9 $$", NULL };
    g_autoptr(GError) error = NULL;

    g_assert_false(spProcessRun(argv, NULL, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_IO);
    g_assert_cmpstr(error->message, ==, "Child process killed by signal 9");
}


static void
testMissing(void)
{
    const char *name[] = { "stormpool-no-such-program", NULL };
    const char *path[] = { "/nonexistent/prog", "arg", NULL };
    g_autoptr(GError) error = NULL;
    char *out = (char *) "stale";

    g_assert_false(spProcessRun(name, &out, &error));
    g_assert_error(error, G_SPAWN_ERROR, G_SPAWN_ERROR_NOENT);
    g_assert_null(out);
    g_clear_error(&error);
    g_assert_false(spProcessRun(path, NULL, &error));
    g_assert_error(error, G_SPAWN_ERROR, G_SPAWN_ERROR_NOENT);
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/process/true", testTrue);
    g_test_add_func("/process/false", testFalse);
    g_test_add_func("/process/stderr", testStderr);
    g_test_add_func("/process/stdout-fallback", testStdoutFallback);
    g_test_add_func("/process/exit-status-decides", testExitStatusDecides);
    g_test_add_func("/process/signal", testSignal);
    g_test_add_func("/process/missing", testMissing);
    return g_test_run();
}
