/*
 * header_cache.c: image headers of unchanged files, read once
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "image/header_cache.h"

typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    struct timespec ctime;
    SpImageInfo info;
    gboolean seen;          /* read since the last sweep of its directory */
} Entry;

/* Entries are grouped by directory: a refresh scans one directory at a
 * time, and its sweep then only walks the entries of that directory. */
struct _SpHeaderCache {
    GMutex lock;
    guint racy_seconds;
    GHashTable *dirs;       /* directory -> (name -> Entry) */
};


static void
entryFree(gpointer data)
{
    Entry *entry = data;

    spImageInfoClear(&entry->info);
    g_free(entry);
}


SpHeaderCache *
spHeaderCacheNew(guint racy_seconds)
{
    SpHeaderCache *cache = g_new0(SpHeaderCache, 1);

    cache->racy_seconds = racy_seconds;
    g_mutex_init(&cache->lock);
    cache->dirs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                        (GDestroyNotify) g_hash_table_unref);
    return cache;
}


void
spHeaderCacheFree(SpHeaderCache *cache)
{
    if (!cache)
        return;
    g_hash_table_unref(cache->dirs);
    g_mutex_clear(&cache->lock);
    g_free(cache);
}


static gboolean
sameTime(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}


static gboolean
entryMatches(const Entry *entry, const struct stat *sb)
{
    return entry->dev == sb->st_dev && entry->ino == sb->st_ino &&
           entry->size == sb->st_size &&
           sameTime(&entry->mtime, &sb->st_mtim) &&
           sameTime(&entry->ctime, &sb->st_ctim);
}


static gboolean
isRacy(const SpHeaderCache *cache, const struct stat *sb)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    return now.tv_sec - sb->st_ctim.tv_sec < (time_t) cache->racy_seconds ||
           now.tv_sec - sb->st_mtim.tv_sec < (time_t) cache->racy_seconds;
}


static gboolean
statFile(int dirfd, const char *dir, const char *name, struct stat *sb,
         GError **error)
{
    if (fstatat(dirfd, name, sb, AT_SYMLINK_NOFOLLOW) < 0) {
        return spErrorSetErrno(error, errno, "image '%s/%s': cannot stat", dir, name);
    }
    if (S_ISLNK(sb->st_mode)) {
        g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                    "image '%s/%s': is a symbolic link", dir, name);
        return FALSE;
    }
    if (!S_ISREG(sb->st_mode)) {
        g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                    "image '%s/%s': not a regular file", dir, name);
        return FALSE;
    }
    return TRUE;
}


static GHashTable *
dirEntries(SpHeaderCache *cache, const char *dir, gboolean create)
{
    GHashTable *entries = g_hash_table_lookup(cache->dirs, dir);

    if (!entries && create) {
        entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entryFree);
        g_hash_table_insert(cache->dirs, g_strdup(dir), entries);
    }
    return entries;
}


static gboolean
lookup(SpHeaderCache *cache, const char *dir, const char *name,
       const struct stat *sb, SpImageInfo *info)
{
    GHashTable *entries;
    Entry *entry = NULL;
    gboolean hit = FALSE;

    g_mutex_lock(&cache->lock);
    if ((entries = dirEntries(cache, dir, FALSE)) &&
        (entry = g_hash_table_lookup(entries, name))) {
        entry->seen = TRUE;
        if ((hit = entryMatches(entry, sb)))
            spImageInfoCopy(info, &entry->info);
    }
    g_mutex_unlock(&cache->lock);
    return hit;
}


static void
store(SpHeaderCache *cache, const char *dir, const char *name,
      const struct stat *sb, const SpImageInfo *info)
{
    GHashTable *entries;
    Entry *entry;

    g_mutex_lock(&cache->lock);
    if (isRacy(cache, sb)) {
        if ((entries = dirEntries(cache, dir, FALSE)))
            g_hash_table_remove(entries, name);
    } else {
        entry = g_new0(Entry, 1);
        entry->dev = sb->st_dev;
        entry->ino = sb->st_ino;
        entry->size = sb->st_size;
        entry->mtime = sb->st_mtim;
        entry->ctime = sb->st_ctim;
        entry->seen = TRUE;
        spImageInfoCopy(&entry->info, info);
        g_hash_table_replace(dirEntries(cache, dir, TRUE), g_strdup(name), entry);
    }
    g_mutex_unlock(&cache->lock);
}


static gboolean
readFile(int dirfd, const char *dir, const char *name, struct stat *sb,
         SpImageInfo *info, GError **error)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    gboolean ok;

    if (fd < 0) {
        return spErrorSetErrno(error, errno, "image '%s/%s': cannot open", dir, name);
    }
    /* The stamps kept are those of the file that was read. */
    if (fstat(fd, sb) < 0) {
        spErrorSetErrno(error, errno, "image '%s/%s': cannot stat", dir, name);
        close(fd);
        return FALSE;
    }
    ok = spImageInfoReadFdStat(fd, sb, info, error);
    close(fd);
    if (!ok)
        g_prefix_error(error, "image '%s/%s': ", dir, name);
    return ok;
}


gboolean
spHeaderCacheRead(SpHeaderCache *cache, int dirfd, const char *dir,
                  const char *name, struct stat *sb, SpImageInfo *info,
                  gboolean *hit, GError **error)
{
    *hit = FALSE;
    if (!statFile(dirfd, dir, name, sb, error))
        return FALSE;
    if (lookup(cache, dir, name, sb, info)) {
        *hit = TRUE;
        return TRUE;
    }
    if (!readFile(dirfd, dir, name, sb, info, error))
        return FALSE;
    store(cache, dir, name, sb, info);
    return TRUE;
}


void
spHeaderCacheSweep(SpHeaderCache *cache, const char *dir)
{
    GHashTable *entries;
    GHashTableIter iter;
    gpointer value;

    g_mutex_lock(&cache->lock);
    if ((entries = dirEntries(cache, dir, FALSE))) {
        g_hash_table_iter_init(&iter, entries);
        while (g_hash_table_iter_next(&iter, NULL, &value)) {
            Entry *entry = value;

            if (!entry->seen)
                g_hash_table_iter_remove(&iter);
            else
                entry->seen = FALSE;
        }
        if (g_hash_table_size(entries) == 0)
            g_hash_table_remove(cache->dirs, dir);
    }
    g_mutex_unlock(&cache->lock);
}


guint
spHeaderCacheSize(SpHeaderCache *cache)
{
    GHashTableIter iter;
    gpointer value;
    guint n = 0;

    g_mutex_lock(&cache->lock);
    g_hash_table_iter_init(&iter, cache->dirs);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        n += g_hash_table_size(value);
    g_mutex_unlock(&cache->lock);
    return n;
}
