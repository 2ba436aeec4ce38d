/*
 * hot_set.h: the byte ranges of a template that its boots read
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A boot reads a small part of its disk (a few hundred MB of a desktop's
 * tens of GB). A hot set is that part: sorted, disjoint, non-adjacent
 * ranges of guest offsets below the template's virtual size. It is learned
 * once per identity of a template, stored as text beside the replicas and
 * turned into a hot replica (hot_replica.h). */

typedef struct {
    guint64 offset;
    guint64 length;
} SpRange;

typedef struct _SpHotSet SpHotSet;

SpHotSet *spHotSetNew(guint64 virtual_size);
void spHotSetFree(SpHotSet *set);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SpHotSet, spHotSetFree)

guint64 spHotSetVirtualSize(const SpHotSet *set);

/* Add [offset, offset + length), merged with what touches it. A range
 * past the virtual size or of length 0 is SP_ERROR_INVALID_ARG. */
gboolean spHotSetAdd(SpHotSet *set, guint64 offset, guint64 length, GError **error);

/* Widen every range to whole multiples of @granularity (a power of two,
 * the replica's cluster size), clipped to the virtual size: a replica
 * holds whole clusters, so this is what it will hold. */
void spHotSetAlign(SpHotSet *set, guint64 granularity);

/* The ranges, in order; *@count is set to their number. */
const SpRange *spHotSetRanges(const SpHotSet *set, guint *count);
guint64 spHotSetBytes(const SpHotSet *set);

/* A new set of what @a and @b both hold (of @a's virtual size). */
SpHotSet *spHotSetIntersect(const SpHotSet *a, const SpHotSet *b);

/* The text form, one "OFFSET LENGTH" line per read or range (decimal
 * bytes); lines starting with '#' and empty lines are comments. A boot
 * trace (bench/bootstorm's `real` trace, one line per read request, in any
 * order, overlapping) parses into its hot set. Bad lines are
 * SP_ERROR_INVALID_ARG naming the line. */
SpHotSet *spHotSetParse(const char *text, guint64 virtual_size, GError **error);

/* The canonical text form: a header comment with the virtual size, then
 * the merged ranges. spHotSetParse of it gives the same set. */
char *spHotSetFormat(const SpHotSet *set);

/* Store @set in @path atomically (temp file, fdatasync, rename, fsync of
 * the directory), replacing an older one; and read it back. */
gboolean spHotSetSave(const SpHotSet *set, const char *path, GError **error);
SpHotSet *spHotSetLoad(const char *path, guint64 virtual_size, GError **error);

/* The hot set learned by a copy-on-read boot: the clusters the qcow2
 * overlay @path (a learning instance booted once with
 * <driver copy_on_read='on'/>) answers itself, with data or as "reads as
 * zeros" (what copy-on-read of a hole of the template leaves), read from
 * its own L1/L2 tables, without a child process. The file is untrusted: every table offset is checked
 * against the file, garbage is SP_ERROR_BAD_IMAGE; extended L2 entries and
 * external data files are SP_ERROR_UNSUPPORTED. */
SpHotSet *spHotSetFromOverlay(const char *path, GError **error);

/* Where the image at @path (format "qcow2" or "raw") holds data of its own:
 * a qcow2 image's clusters with data (not "reads as zeros"), a raw
 * file's extents (SEEK_DATA/SEEK_HOLE). What a copy of it can hold. */
SpHotSet *spHotSetImageData(const char *path, const char *format, GError **error);

G_END_DECLS
