/*
 * test_size_format.c: the exact size texts of the core's messages
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "util/size_format.h"
#include "test_helpers.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)
#define TiB (1024 * GiB)
#define PiB (1024 * TiB)

static void
assertSize(guint64 bytes, const char *want)
{
    g_autofree char *got = spFormatSize(bytes);

    g_assert_cmpstr(got, ==, want);
}


static void
testBytes(void)
{
    assertSize(0, "0 bytes");
    assertSize(1, "1 bytes");
    assertSize(512, "512 bytes");
    assertSize(1023, "1023 bytes");
}


static void
testBinaryUnits(void)
{
    assertSize(KiB, "1.0 KiB");
    assertSize(KiB + KiB / 2, "1.5 KiB");
    assertSize(2 * MiB, "2.0 MiB");
    assertSize(900 * MiB, "900.0 MiB");
    assertSize(GiB, "1.0 GiB");
    assertSize(GiB + GiB / 4, "1.2 GiB");       /* 1.25 rounds to even */
    assertSize(10 * GiB - 1, "10.0 GiB");
    assertSize(3 * TiB, "3.0 TiB");
    assertSize(PiB, "1.0 PiB");
}


static void
testLimits(void)
{
    /* rounding can show 1024.0 of a unit; PiB is the last unit */
    assertSize(MiB - 1, "1024.0 KiB");
    assertSize(2048 * PiB, "2048.0 PiB");
    assertSize(G_MAXUINT64, "16384.0 PiB");
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/size-format/bytes", testBytes);
    g_test_add_func("/size-format/binary-units", testBinaryUnits);
    g_test_add_func("/size-format/limits", testLimits);
    return g_test_run();
}
