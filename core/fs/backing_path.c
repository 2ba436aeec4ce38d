/*
 * backing_path.c: backing file names, and naming dependents
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "stormpool/error.h"
#include "fs/backing_path.h"

char *
spBackingFileResolve(const char *overlay_path, const char *backing_file)
{
    g_autofree char *dir = NULL;

    if (g_path_is_absolute(backing_file))
        return g_strdup(backing_file);
    dir = g_path_get_dirname(overlay_path);
    return g_build_filename(dir, backing_file, NULL);
}


/* The next component of a path, skipping repeated slashes; FALSE at the
 * end. */
static gboolean
nextComponent(const char **cursor, const char **start, size_t *len)
{
    const char *p = *cursor;

    while (*p == '/')
        p++;
    if (!*p)
        return FALSE;
    *start = p;
    while (*p && *p != '/')
        p++;
    *len = p - *start;
    *cursor = p;
    return TRUE;
}


/* Compared component by component, so that it allocates nothing: refresh
 * asks this of every volume several times. */
gboolean
spPathIsInDir(const char *path, const char *dir)
{
    const char *p = path, *d = dir;
    const char *pstart, *dstart;
    size_t plen, dlen;

    if ((path[0] == '/') != (dir[0] == '/'))
        return FALSE;
    while (nextComponent(&d, &dstart, &dlen)) {
        if (!nextComponent(&p, &pstart, &plen) || plen != dlen ||
            memcmp(pstart, dstart, plen) != 0)
            return FALSE;
    }
    /* exactly one more component, the file name */
    return nextComponent(&p, &pstart, &plen) && !nextComponent(&p, &pstart, &plen);
}


char *
spTemplateDependentsSummary(GPtrArray *names, guint max_listed)
{
    GString *s = g_string_new(NULL);
    guint i;

    for (i = 0; i < names->len && i < max_listed; i++) {
        if (i > 0)
            g_string_append(s, ", ");
        g_string_append(s, g_ptr_array_index(names, i));
    }
    if (names->len > max_listed)
        g_string_append_printf(s, " and %u more", names->len - max_listed);
    return g_string_free(s, FALSE);
}
