/*
 * volume_name.h: which volume names a stormpool pool accepts
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define SP_VOLUME_NAME_MAX 255

/* A volume name is a file name in one of the tiers: non-empty, at most 255
 * bytes, no '/', no leading '.' (hidden files, '.', '..' and our temporary
 * files) and no control characters. */
gboolean spVolumeNameValidate(const char *name, GError **error);

G_END_DECLS
