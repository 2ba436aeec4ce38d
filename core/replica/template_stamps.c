/*
 * template_stamps.c: what each template looked like at the last refresh,
 *                    kept in a file of the pool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/atomic_file.h"
#include "util/full_io.h"
#include "stormpool/error.h"
#include "replica/template_stamps.h"

#define HEADER "# stormpool template stamps v1: inode size mtime name\n"


void
spTemplateStampFromStat(SpTemplateStamp *stamp, const struct stat *sb)
{
    stamp->ino = sb->st_ino;
    stamp->size = sb->st_size;
    stamp->mtime_sec = sb->st_mtim.tv_sec;
    stamp->mtime_nsec = sb->st_mtim.tv_nsec;
}


gboolean
spTemplateStampSameInode(const SpTemplateStamp *a, const SpTemplateStamp *b)
{
    return a->ino == b->ino;
}


gboolean
spTemplateStampEqual(const SpTemplateStamp *a, const SpTemplateStamp *b)
{
    return spTemplateStampSameInode(a, b) && a->size == b->size &&
           a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec;
}


GHashTable *
spTemplateStampsNew(void)
{
    return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
}


void
spTemplateStampsSet(GHashTable *stamps, const char *name, const SpTemplateStamp *stamp)
{
    SpTemplateStamp *copy = g_new(SpTemplateStamp, 1);

    *copy = *stamp;
    g_hash_table_replace(stamps, g_strdup(name), copy);
}


/* Whether @escaped (g_strescape() output) ends inside an escape: a lone
 * backslash at the end, which g_strcompress() drops with a warning. */
static gboolean
escapeCutOff(const char *escaped)
{
    size_t len = strlen(escaped);
    size_t backslashes = 0;

    while (backslashes < len && escaped[len - 1 - backslashes] == '\\')
        backslashes++;
    return backslashes % 2 == 1;
}


static void
parseLine(GHashTable *stamps, const char *line)
{
    SpTemplateStamp stamp = { 0 };
    guint64 ino;
    gint64 size, sec, nsec;
    int used = 0;
    g_autofree char *name = NULL;

    if (line[0] == '#' ||
        sscanf(line, "%" SCNu64 " %" SCNd64 " %" SCNd64 ".%" SCNd64 "%n",
               &ino, &size, &sec, &nsec, &used) != 4 || used == 0 ||
        line[used] != ' ' || size < 0 || nsec < 0 || nsec > 999999999 ||
        escapeCutOff(line + used + 1))
        return;
    /* one space, then the name, which may itself start with a space */
    name = g_strcompress(line + used + 1);
    if (!name[0] || strchr(name, '/'))
        return;
    stamp.ino = ino;
    stamp.size = size;
    stamp.mtime_sec = sec;
    stamp.mtime_nsec = nsec;
    spTemplateStampsSet(stamps, name, &stamp);
}


GHashTable *
spTemplateStampsLoad(const char *path, GError **error)
{
    g_autoptr(GHashTable) stamps = spTemplateStampsNew();
    g_autoptr(GError) err = NULL;
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;
    size_t i;

    if (!g_file_get_contents(path, &text, NULL, &err)) {
        if (g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            return g_steal_pointer(&stamps);
        g_set_error(error, SP_ERROR, SP_ERROR_IO, "cannot read template stamps '%s': %s",
                    path, err->message);
        return NULL;
    }
    lines = g_strsplit(text, "\n", -1);
    for (i = 0; lines[i]; i++)
        parseLine(stamps, lines[i]);
    return g_steal_pointer(&stamps);
}


static gint
compareNames(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char * const *) a, *(const char * const *) b);
}


static char *
formatStamps(GHashTable *stamps)
{
    g_autofree gpointer *names = NULL;
    GString *out = g_string_new(HEADER);
    guint n, i;

    names = g_hash_table_get_keys_as_array(stamps, &n);
    qsort(names, n, sizeof(*names), compareNames);
    for (i = 0; i < n; i++) {
        const SpTemplateStamp *stamp = g_hash_table_lookup(stamps, names[i]);
        g_autofree char *escaped = g_strescape(names[i], NULL);

        g_string_append_printf(out, "%" PRIu64 " %" PRId64 " %" PRId64 ".%09" PRId64 " %s\n",
                               stamp->ino, stamp->size, stamp->mtime_sec, stamp->mtime_nsec,
                               escaped);
    }
    return g_string_free(out, FALSE);
}


gboolean
spTemplateStampsSave(const char *path, GHashTable *stamps, GError **error)
{
    g_autoptr(SpAtomicFile) file = NULL;
    g_autofree char *text = formatStamps(stamps);

    if (!(file = spAtomicFileBegin(path, 0600, error)))
        return FALSE;
    if (!spFullWrite(spAtomicFileFd(file), text, strlen(text), error,
                     "cannot write template stamps '%s'", path))
        return FALSE;
    return spAtomicFileCommit(file, TRUE, error);
}


gboolean
spTemplateStampsEqual(GHashTable *a, GHashTable *b)
{
    GHashTableIter iter;
    gpointer name, stamp;

    if (g_hash_table_size(a) != g_hash_table_size(b))
        return FALSE;
    g_hash_table_iter_init(&iter, a);
    while (g_hash_table_iter_next(&iter, &name, &stamp)) {
        const SpTemplateStamp *other = g_hash_table_lookup(b, name);

        if (!other || !spTemplateStampEqual(stamp, other))
            return FALSE;
    }
    return TRUE;
}
