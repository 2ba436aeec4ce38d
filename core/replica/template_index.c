/*
 * template_index.c: which instances depend on which template
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "stormpool/error.h"
#include "util/dir.h"
#include "image/image_header.h"
#include "replica/template_index.h"
#include "replica/template_replica.h"

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


typedef struct {
    dev_t dev;
    ino_t ino;
} InodeKey;


static gboolean
backsOntoAny(const char *overlay_path, GArray *inodes)
{
    g_auto(SpImageInfo) info = { 0 };
    g_autofree char *backing = NULL;
    struct stat sb;
    guint i;

    if (!spImageInfoRead(overlay_path, &info, NULL) ||
        info.format != SP_IMAGE_FORMAT_QCOW2 || !info.backing_file)
        return FALSE;
    backing = spBackingFileResolve(overlay_path, info.backing_file);
    if (stat(backing, &sb) < 0)
        return FALSE;
    for (i = 0; i < inodes->len; i++) {
        InodeKey *key = &g_array_index(inodes, InodeKey, i);
        if (key->dev == sb.st_dev && key->ino == sb.st_ino)
            return TRUE;
    }
    return FALSE;
}


static int
compareNames(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char * const *) a, *(char * const *) b);
}


GPtrArray *
spBackingDependents(const char *secondary_dir, const char * const *backing_paths,
                    GError **error)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GArray) inodes = g_array_new(FALSE, FALSE, sizeof(InodeKey));
    g_autoptr(GDir) dir = NULL;
    const char *name;
    size_t i;

    for (i = 0; backing_paths[i]; i++) {
        struct stat sb;
        InodeKey key;

        if (stat(backing_paths[i], &sb) < 0) {
            /* A file that is gone has no dependents to protect. */
            if (errno == ENOENT)
                continue;
            spErrorSetErrno(error, errno, "cannot stat '%s'", backing_paths[i]);
            return NULL;
        }
        key.dev = sb.st_dev;
        key.ino = sb.st_ino;
        g_array_append_val(inodes, key);
    }
    if (inodes->len == 0)
        return g_steal_pointer(&names);
    if (!(dir = spDirOpen(secondary_dir, error)))
        return NULL;

    while ((name = g_dir_read_name(dir))) {
        g_autofree char *path = NULL;

        if (name[0] == '.')
            continue;
        path = g_build_filename(secondary_dir, name, NULL);
        if (backsOntoAny(path, inodes))
            g_ptr_array_add(names, g_strdup(name));
    }
    g_ptr_array_sort(names, compareNames);
    return g_steal_pointer(&names);
}


GPtrArray *
spTemplateDependents(const char *secondary_dir, const char *template_path,
                     GError **error)
{
    g_autofree char *template_name = g_path_get_basename(template_path);
    g_autoptr(GPtrArray) replicas = NULL;
    g_autoptr(GPtrArray) paths = g_ptr_array_new();
    guint i;

    if (!(replicas = spReplicaList(secondary_dir, error)))
        return NULL;
    g_ptr_array_add(paths, (gpointer) template_path);
    for (i = 0; i < replicas->len; i++) {
        SpReplicaInfo *replica = g_ptr_array_index(replicas, i);
        if (strcmp(replica->template_name, template_name) == 0)
            g_ptr_array_add(paths, replica->path);
    }
    g_ptr_array_add(paths, NULL);
    return spBackingDependents(secondary_dir, (const char * const *) paths->pdata, error);
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
