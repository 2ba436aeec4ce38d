/*
 * error.c: error domain of the stormpool core library
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "stormpool/error.h"

GQuark
spErrorQuark(void)
{
    return g_quark_from_static_string("stormpool-error-quark");
}
