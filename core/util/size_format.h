/*
 * size_format.h: byte counts as people read them, in messages
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* "1023 bytes", "1.5 GiB": binary units up to PiB with one decimal, in
 * plain ASCII. Not g_format_size: it uses SI units and puts a no-break
 * space before the unit, which libvirt's error messages and logs show
 * as garbage. */
char *spFormatSize(guint64 bytes);

G_END_DECLS
