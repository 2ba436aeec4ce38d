/*
 * pool_index.c: the volumes a running pool lists, in memory
 *
 * What libvirt lists of the tiers, kept by the pool itself so that
 * the questions of a new instance (which template, in which format, how
 * big, still being written?) are answered from state, under libvirt's
 * pool lock, without reading a file. Refresh fills it from its scan; the
 * pool's own changes (a volume planned, built, resized or deleted) keep
 * it current in between, as libvirt's volume list is.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>

#include "pool_private.h"

void
spVolumeEntryFree(SpVolumeEntry *entry)
{
    if (!entry)
        return;
    g_free(entry->name);
    g_free(entry->path);
    g_free(entry->backing_path);
    g_free(entry);
}


static SpVolumeEntry *
entryCopy(const SpVolumeEntry *entry)
{
    SpVolumeEntry *copy = g_memdup2(entry, sizeof(*entry));

    copy->name = g_strdup(entry->name);
    copy->path = g_strdup(entry->path);
    copy->backing_path = g_strdup(entry->backing_path);
    return copy;
}


static SpVolumeEntry *
entryOfVolume(const SpVolume *volume)
{
    SpVolumeEntry *entry = g_new0(SpVolumeEntry, 1);

    entry->name = g_strdup(volume->name);
    entry->path = g_strdup(volume->path);
    entry->tier = volume->tier;
    entry->role = volume->role;
    entry->format = volume->info.format;
    entry->capacity = volume->info.virtual_size;
    entry->backing_path = g_strdup(volume->backing_path);
    return entry;
}


/* A volume still being built is listed until its build ends, whatever
 * the files say meanwhile; and a scan that began before the pool changed
 * a volume (a sync on the worker thread while libvirt's thread built
 * one) does not undo the change. */
static gboolean
keptOverScan(const SpVolumeEntry *entry, guint64 scan_began)
{
    return entry->building || entry->changed > scan_began;
}


static gboolean
replacedByScan(gpointer key G_GNUC_UNUSED, gpointer value, gpointer data)
{
    return !keptOverScan(value, *(guint64 *) data);
}


static GPtrArray *
entriesOf(GPtrArray *volumes)
{
    GPtrArray *entries = g_ptr_array_new_with_free_func((GDestroyNotify) spVolumeEntryFree);
    guint i;

    for (i = 0; i < volumes->len; i++)
        g_ptr_array_add(entries, entryOfVolume(g_ptr_array_index(volumes, i)));
    return entries;
}


guint64
spPoolIndexGeneration(SpPool *pool)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->index_lock);

    return pool->index_generation;
}


void
spPoolIndexReplace(SpPool *pool, GPtrArray *volumes, GPtrArray *unlisted, guint64 scan_began)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->index_lock);
    SpVolumeEntry *old;
    guint i;

    g_hash_table_foreach_remove(pool->volumes, replacedByScan, &scan_began);
    if (unlisted) {
        g_clear_pointer(&pool->unlisted, g_ptr_array_unref);
        pool->unlisted = entriesOf(unlisted);
    }
    for (i = 0; i < volumes->len; i++) {
        const SpVolume *volume = g_ptr_array_index(volumes, i);

        if ((old = g_hash_table_lookup(pool->volumes, volume->name)) &&
            keptOverScan(old, scan_began))
            continue;
        g_hash_table_replace(pool->volumes, g_strdup(volume->name), entryOfVolume(volume));
    }
}


void
spPoolIndexUpdate(SpPool *pool, const SpVolume *volume)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->index_lock);
    SpVolumeEntry *entry = entryOfVolume(volume);
    SpVolumeEntry *old = g_hash_table_lookup(pool->volumes, volume->name);

    entry->building = old && old->building;
    entry->changed = ++pool->index_generation;
    g_hash_table_replace(pool->volumes, g_strdup(volume->name), entry);
}


void
spPoolIndexAdd(SpPool *pool, const SpVolumeEntry *entry)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->index_lock);
    SpVolumeEntry *copy = entryCopy(entry);

    copy->changed = ++pool->index_generation;
    g_hash_table_replace(pool->volumes, g_strdup(entry->name), copy);
}


void
spPoolIndexBuilt(SpPool *pool, const char *name, gboolean ok)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->index_lock);
    SpVolumeEntry *entry = g_hash_table_lookup(pool->volumes, name);

    pool->index_generation++;
    if (!entry)
        return;
    entry->changed = pool->index_generation;
    if (ok)
        entry->building = FALSE;
    else
        g_hash_table_remove(pool->volumes, name);
}


void
spPoolIndexRemove(SpPool *pool, const char *name)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->index_lock);

    pool->index_generation++;
    g_hash_table_remove(pool->volumes, name);
}


/* By name, or by path (which is also the key): "/srv//hdd/t.qcow2/"
 * names the same file as "/srv/hdd/t.qcow2". */
SpVolumeEntry *
spPoolIndexLookup(SpPool *pool, const char *spec)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->index_lock);
    g_autofree char *clean = NULL;
    GHashTableIter iter;
    gpointer value;

    if (!strchr(spec, '/')) {
        value = g_hash_table_lookup(pool->volumes, spec);
        return value ? entryCopy(value) : NULL;
    }
    clean = g_canonicalize_filename(spec, "/");
    g_hash_table_iter_init(&iter, pool->volumes);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        if (strcmp(((SpVolumeEntry *) value)->path, clean) == 0)
            return entryCopy(value);
    }
    return NULL;
}


GPtrArray *
spPoolIndexEntries(SpPool *pool)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->index_lock);
    GPtrArray *entries = g_ptr_array_new_with_free_func((GDestroyNotify) spVolumeEntryFree);
    GHashTableIter iter;
    gpointer value;

    guint i;

    g_hash_table_iter_init(&iter, pool->volumes);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        g_ptr_array_add(entries, entryCopy(value));
    for (i = 0; pool->unlisted && i < pool->unlisted->len; i++)
        g_ptr_array_add(entries, entryCopy(g_ptr_array_index(pool->unlisted, i)));
    return entries;
}
