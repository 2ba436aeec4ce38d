/*
 * template_stamps.h: what each template looked like at the last refresh,
 *                    kept in a file of the pool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <sys/stat.h>

G_BEGIN_DECLS

/* A template that changes while instances back onto it (directly, or
 * through a hard link) corrupts them. The pool never changes a template
 * that has dependents, so a changed stamp means a change behind libvirt's
 * back. The stamps live in the secondary tier, so that a change made
 * while the daemon was down is still seen by the next refresh. */
#define SP_TEMPLATE_STAMPS_FILE ".stormpool-template-stamps"

/* No device number: those of some block devices change at every boot. */
typedef struct {
    guint64 ino;
    gint64 size;
    gint64 mtime_sec;
    gint64 mtime_nsec;
} SpTemplateStamp;

void spTemplateStampFromStat(SpTemplateStamp *stamp, const struct stat *sb);

/* Whether the template is unchanged. */
gboolean spTemplateStampEqual(const SpTemplateStamp *a, const SpTemplateStamp *b);

/* Whether @a and @b are the same inode (changed in place, not replaced). */
gboolean spTemplateStampSameInode(const SpTemplateStamp *a, const SpTemplateStamp *b);

/* template name -> SpTemplateStamp */
GHashTable *spTemplateStampsNew(void);

/* Set (a copy of) @stamp for @name. */
void spTemplateStampsSet(GHashTable *stamps, const char *name, const SpTemplateStamp *stamp);

/* The stamps saved at @path; none when the file does not exist. Lines
 * that do not parse are skipped: the file is only a memory of the past,
 * and losing one stamp costs at most one missed alarm. */
GHashTable *spTemplateStampsLoad(const char *path, GError **error);

/* Replace the file at @path atomically with @stamps. */
gboolean spTemplateStampsSave(const char *path, GHashTable *stamps, GError **error);

/* Whether @a and @b hold the same names and equal stamps. */
gboolean spTemplateStampsEqual(GHashTable *a, GHashTable *b);

G_END_DECLS
