/*
 * test_volume_name.c: volume name rules
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>

#include "stormpool/error.h"
#include "fs/volume_name.h"

static void
testValidNames(void)
{
    const char *good[] = {
        "pc01.qcow2", "win10", "a", "name with spaces.img", "x..y",
        "pc-01_ä.qcow2", "trailing.",
    };
    g_autofree char *longest = g_strnfill(SP_VOLUME_NAME_MAX, 'n');
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(good); i++)
        g_assert_true(spVolumeNameValidate(good[i], NULL));
    g_assert_true(spVolumeNameValidate(longest, NULL));
}


static void
assertRejected(const char *name, const char *fragment)
{
    g_autoptr(GError) error = NULL;

    g_assert_false(spVolumeNameValidate(name, &error));
    g_assert_error(error, SP_ERROR, SP_ERROR_INVALID_ARG);
    g_assert_nonnull(strstr(error->message, fragment));
}


static void
testInvalidNames(void)
{
    g_autofree char *too_long = g_strnfill(SP_VOLUME_NAME_MAX + 1, 'n');

    assertRejected(NULL, "empty");
    assertRejected("", "empty");
    assertRejected(too_long, "256 bytes");
    assertRejected("a/b", "'/'");
    assertRejected("/etc/passwd", "'/'");
    assertRejected("../x", "'/'");
    assertRejected(".", "start with '.'");
    assertRejected("..", "start with '.'");
    assertRejected(".hidden.qcow2", "start with '.'");
    assertRejected(".stormpool-tmp-pc01.qcow2-abc", "start with '.'");
    assertRejected("new\nline", "control characters");
    assertRejected("tab\tname", "control characters");
    assertRejected("del\x7f", "control characters");
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/volume-name/valid", testValidNames);
    g_test_add_func("/volume-name/invalid", testInvalidNames);
    return g_test_run();
}
