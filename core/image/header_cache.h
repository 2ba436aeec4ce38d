/*
 * header_cache.h: image headers of unchanged files, read once
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <sys/stat.h>

#include "image/image_header.h"

G_BEGIN_DECLS

/* A refresh of a big pool reads thousands of headers that have not
 * changed since the last one. The cache keeps each parsed header with the
 * file's device, inode, size, mtime and ctime, and hands it back while
 * fstatat() still says exactly that; any write changes mtime and ctime.
 * Headers of files changed within the last couple of seconds are not
 * kept, since a second change in the same timestamp tick would go
 * unnoticed (git's "racily clean" files). Safe for concurrent use. */
typedef struct _SpHeaderCache SpHeaderCache;

#define SP_HEADER_CACHE_RACY_SECONDS 2

/* Files changed less than @racy_seconds ago are read but not kept. */
SpHeaderCache *spHeaderCacheNew(guint racy_seconds);
void spHeaderCacheFree(SpHeaderCache *cache);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SpHeaderCache, spHeaderCacheFree)

/* Read the header of @name in @dir, which is open on @dirfd. @sb receives
 * the file's status. Symlinks and non-regular files are
 * SP_ERROR_BAD_IMAGE, as in spImageInfoRead. Sets *@hit when nothing had
 * to be read. */
gboolean spHeaderCacheRead(SpHeaderCache *cache, int dirfd, const char *dir,
                           const char *name, struct stat *sb, SpImageInfo *info,
                           gboolean *hit, GError **error);

/* Forget the entries of files in @dir that were not read since the last
 * call for @dir (they are gone): call after each scan of @dir. */
void spHeaderCacheSweep(SpHeaderCache *cache, const char *dir);

guint spHeaderCacheSize(SpHeaderCache *cache);

G_END_DECLS
