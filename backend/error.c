/*
 * error.c: error domain of the stormpool core library
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "stormpool/error.h"

G_DEFINE_QUARK(stormpool-error-quark, spError)
