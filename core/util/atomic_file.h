/*
 * atomic_file.h: create a file so that it exists completely or not at all
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

/* Temporary files start with this prefix; the leading '.' keeps them out
 * of volume names, and refresh removes stale ones left by a crash. */
#define SP_ATOMIC_FILE_TMP_PREFIX ".stormpool-tmp-"

typedef struct _SpAtomicFile SpAtomicFile;

/* Open a new temporary file next to @path (O_EXCL|O_NOFOLLOW, @mode). */
SpAtomicFile *spAtomicFileBegin(const char *path, mode_t mode, GError **error);

int spAtomicFileFd(SpAtomicFile *file);
const char *spAtomicFileTmpPath(SpAtomicFile *file);

/* fdatasync the data, rename over @path and fsync the directory. Without
 * @replace an existing @path is never overwritten (SP_ERROR_EXISTS). The
 * temporary file is gone afterwards whether or not this succeeds. */
gboolean spAtomicFileCommit(SpAtomicFile *file, gboolean replace, GError **error);

/* Remove the temporary file (if not committed) and free @file. */
void spAtomicFileFree(SpAtomicFile *file);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SpAtomicFile, spAtomicFileFree)

/* Whether @name (a directory entry) is a temporary file of ours. */
gboolean spAtomicFileIsTmpName(const char *name);

/* Remove the temporary file @name of @dir_fd unless it is being written
 * (its writer holds its lock, on this host or another sharing the file
 * system): 0, or -1 with errno (EBUSY while it is written). */
int spAtomicFileRemoveStale(int dir_fd, const char *name);

G_END_DECLS
