/*
 * tier_layout.h: the two directories of a stormpool pool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

#include "stormpool/types.h"

G_BEGIN_DECLS

const char *spTierName(SpTier tier);

/* @path with repeated and trailing slashes collapsed, so that string
 * comparison of two spellings of one path works; '.' and '..' are left
 * to the caller. */
char *spTierPathNormalise(const char *path);

/* Whether one of two absolute paths equals or contains the other, judged
 * on the normalised strings alone (the directories need not exist). */
gboolean spTierPathsOverlap(const char *a, const char *b);

/* Validate the paths as written in the pool XML: absolute, distinct and
 * not nested. Used when a pool is defined, before any directory exists. */
gboolean spTierLayoutValidatePaths(const char *primary, const char *secondary,
                                   GError **error);

/* Check the tiers of a pool being started: both exist (else
 * SP_ERROR_TIER_MISSING) and are directories,
 * after resolving symlinks they are neither the same nor nested, the
 * primary is readable and the secondary writable. */
gboolean spTierLayoutCheck(const char *primary, const char *secondary,
                           GError **error);

/* Space of the filesystem holding @dir, as statvfs reports it. */
gboolean spTierUsageGet(const char *dir, SpTierUsage *usage, GError **error);

G_END_DECLS
