/*
 * size_format.c: byte counts as people read them, in messages
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "util/size_format.h"

char *
spFormatSize(guint64 bytes)
{
    static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
    double value = bytes;
    guint unit = 0;

    while (value >= 1024 && unit + 1 < G_N_ELEMENTS(units)) {
        value /= 1024;
        unit++;
    }
    /* whole bytes are exact; a double would print "512.0 bytes" */
    if (unit == 0)
        return g_strdup_printf("%" G_GUINT64_FORMAT " bytes", bytes);
    return g_strdup_printf("%.1f %s", value, units[unit]);
}
