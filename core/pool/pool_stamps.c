/*
 * pool_stamps.c: templates changed behind libvirt's back
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <sys/stat.h>

#include "pool_private.h"
#include "replica/template_stamps.h"
#include "replica/template_versions.h"

static char *
stampsPath(SpPool *pool)
{
    return g_build_filename(pool->secondary, SP_TEMPLATE_STAMPS_FILE, NULL);
}


static GHashTable *
loadStamps(const char *path)
{
    g_autoptr(GError) err = NULL;
    GHashTable *stamps;

    if (!(stamps = spTemplateStampsLoad(path, &err))) {
        g_warning("%s; template changes will only be seen from now on", err->message);
        stamps = spTemplateStampsNew();
    }
    return stamps;
}


static void
saveStamps(const char *path, GHashTable *stamps)
{
    g_autoptr(GError) err = NULL;

    if (!spTemplateStampsSave(path, stamps, &err))
        g_warning("%s", err->message);
}


void
spPoolForgetTemplateStamp(SpPool *pool, const char *path)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->stamps_lock);
    g_autofree char *stamps_path = stampsPath(pool);
    g_autofree char *name = g_path_get_basename(path);
    g_autoptr(GHashTable) stamps = loadStamps(stamps_path);

    if (g_hash_table_remove(stamps, name))
        saveStamps(stamps_path, stamps);
}


typedef struct {
    char *path;
    struct stat sb;
    gboolean in_place;
} ChangedTemplate;


static void
changedTemplateFree(ChangedTemplate *changed)
{
    g_free(changed->path);
    g_free(changed);
}


/* Whether the file the stamp @old describes is now a kept version of the
 * template @name: a new version was published (by another pool sharing
 * the primary tier; this pool forgets its own), which changes nothing for
 * what depends on the old one. */
static gboolean
publishedVersion(SpPool *pool, const char *name, const SpTemplateStamp *old)
{
    g_autoptr(GPtrArray) versions = spVersionList(pool->primary, name, NULL);
    guint i;

    for (i = 0; versions && i < versions->len; i++) {
        SpTemplateStamp kept;
        struct stat sb;

        if (stat(g_ptr_array_index(versions, i), &sb) < 0)
            continue;
        spTemplateStampFromStat(&kept, &sb);
        if (spTemplateStampEqual(&kept, old))
            return TRUE;
    }
    return FALSE;
}


/* Compare the template with its stamp from the last refresh (possibly
 * made by an earlier run of the daemon); NULL when unchanged. */
static ChangedTemplate *
compareStamp(SpPool *pool, const SpVolume *template, GHashTable *before, GHashTable *now)
{
    SpTemplateStamp stamp;
    const SpTemplateStamp *old;
    ChangedTemplate *change;
    struct stat sb;

    /* An upload changes the template until it ends: stamped then. */
    if (spPoolTemplateUploading(pool, template->path) || stat(template->path, &sb) < 0)
        return NULL;
    spTemplateStampFromStat(&stamp, &sb);
    spTemplateStampsSet(now, template->name, &stamp);
    if (!(old = g_hash_table_lookup(before, template->name)) ||
        spTemplateStampEqual(old, &stamp))
        return NULL;
    if (publishedVersion(pool, template->name, old)) {
        g_info("template '%s' has a new version; what depended on the one before keeps "
               "it", template->path);
        return NULL;
    }
    change = g_new0(ChangedTemplate, 1);
    change->path = g_strdup(template->path);
    change->sb = sb;
    change->in_place = spTemplateStampSameInode(old, &stamp);
    return change;
}


/* Compare every template with its stamp, and keep the new stamps. */
static GPtrArray *
collectChanged(SpPool *pool, GHashTable *templates)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->stamps_lock);
    GPtrArray *changed = g_ptr_array_new_with_free_func((GDestroyNotify) changedTemplateFree);
    g_autofree char *stamps_path = stampsPath(pool);
    g_autoptr(GHashTable) before = loadStamps(stamps_path);
    g_autoptr(GHashTable) now = spTemplateStampsNew();
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, templates);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        ChangedTemplate *change = compareStamp(pool, value, before, now);

        if (change)
            g_ptr_array_add(changed, change);
    }
    if (!spTemplateStampsEqual(before, now))
        saveStamps(stamps_path, now);
    return changed;
}


/* Instances on the template itself see any change; those on a hard link
 * of it see changes made in place. Copies are safe. */
static gboolean
atRisk(const ChangedTemplate *changed, const SpVolume *volume)
{
    struct stat sb;

    if (volume->tier != SP_TIER_SECONDARY || !volume->backing_path)
        return FALSE;
    if (strcmp(volume->backing_path, changed->path) == 0)
        return TRUE;
    return changed->in_place && stat(volume->backing_path, &sb) == 0 &&
           sb.st_dev == changed->sb.st_dev && sb.st_ino == changed->sb.st_ino;
}


static int
compareNames(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char * const *) a, *(const char * const *) b);
}


static void
reportAtRisk(const ChangedTemplate *changed, GPtrArray *volumes)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    g_autofree char *list = NULL;
    guint i;

    for (i = 0; i < volumes->len; i++) {
        SpVolume *volume = g_ptr_array_index(volumes, i);

        if (atRisk(changed, volume))
            g_ptr_array_add(names, volume->name);
    }
    if (names->len == 0) {
        g_info("template '%s' changed; no instance depends on it directly", changed->path);
        return;
    }
    g_ptr_array_sort(names, compareNames);
    g_ptr_array_add(names, NULL);
    list = g_strjoinv(", ", (char **) names->pdata);
    g_critical("template '%s' changed behind libvirt's back while %u instance(s) "
               "depend on it directly; their data is at risk: %s",
               changed->path, names->len - 1, list);
}


/* Only a changed template makes refresh look at every instance again. */
void
spPoolCheckTemplateStamps(SpPool *pool, GPtrArray *volumes, GHashTable *templates)
{
    g_autoptr(GPtrArray) changed = collectChanged(pool, templates);
    guint i;

    for (i = 0; i < changed->len; i++)
        reportAtRisk(g_ptr_array_index(changed, i), volumes);
}
