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
#include "stormpool/header_cache.h"
#include "stormpool/template_index.h"

typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    struct timespec ctime;
    SpImageInfo info;
    gboolean seen;          /* read since the last sweep of its directory */
} Entry;

struct _SpHeaderCache {
    GMutex lock;
    guint racy_seconds;
    GHashTable *entries;    /* path -> Entry */
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
    cache->entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entryFree);
    return cache;
}


void
spHeaderCacheFree(SpHeaderCache *cache)
{
    if (!cache)
        return;
    g_hash_table_unref(cache->entries);
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
statFile(int dirfd, const char *name, const char *path, struct stat *sb,
         GError **error)
{
    if (fstatat(dirfd, name, sb, AT_SYMLINK_NOFOLLOW) < 0) {
        int err = errno;
        g_set_error(error, SP_ERROR, err == ENOENT ? SP_ERROR_NOT_FOUND : SP_ERROR_IO,
                    "image '%s': cannot stat: %s", path, g_strerror(err));
        return FALSE;
    }
    if (S_ISLNK(sb->st_mode)) {
        g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                    "image '%s': is a symbolic link", path);
        return FALSE;
    }
    if (!S_ISREG(sb->st_mode)) {
        g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                    "image '%s': not a regular file", path);
        return FALSE;
    }
    return TRUE;
}


static gboolean
lookup(SpHeaderCache *cache, const char *path, const struct stat *sb,
       SpImageInfo *info)
{
    Entry *entry;
    gboolean hit = FALSE;

    g_mutex_lock(&cache->lock);
    if ((entry = g_hash_table_lookup(cache->entries, path))) {
        entry->seen = TRUE;
        if ((hit = entryMatches(entry, sb)))
            spImageInfoCopy(info, &entry->info);
    }
    g_mutex_unlock(&cache->lock);
    return hit;
}


static void
store(SpHeaderCache *cache, const char *path, const struct stat *sb,
      const SpImageInfo *info)
{
    Entry *entry;

    g_mutex_lock(&cache->lock);
    if (isRacy(cache, sb)) {
        g_hash_table_remove(cache->entries, path);
    } else {
        entry = g_new0(Entry, 1);
        entry->dev = sb->st_dev;
        entry->ino = sb->st_ino;
        entry->size = sb->st_size;
        entry->mtime = sb->st_mtim;
        entry->ctime = sb->st_ctim;
        entry->seen = TRUE;
        spImageInfoCopy(&entry->info, info);
        g_hash_table_replace(cache->entries, g_strdup(path), entry);
    }
    g_mutex_unlock(&cache->lock);
}


static gboolean
readFile(int dirfd, const char *name, const char *path, struct stat *sb,
         SpImageInfo *info, GError **error)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    gboolean ok;

    if (fd < 0) {
        int err = errno;
        g_set_error(error, SP_ERROR, err == ENOENT ? SP_ERROR_NOT_FOUND : SP_ERROR_IO,
                    "image '%s': cannot open: %s", path, g_strerror(err));
        return FALSE;
    }
    /* The stamps kept are those of the file that was read. */
    if (fstat(fd, sb) < 0) {
        int err = errno;
        close(fd);
        g_set_error(error, SP_ERROR, SP_ERROR_IO, "image '%s': cannot stat: %s",
                    path, g_strerror(err));
        return FALSE;
    }
    ok = spImageInfoReadFdStat(fd, sb, info, error);
    close(fd);
    if (!ok)
        g_prefix_error(error, "image '%s': ", path);
    return ok;
}


gboolean
spHeaderCacheRead(SpHeaderCache *cache, int dirfd, const char *name,
                  const char *path, struct stat *sb, SpImageInfo *info,
                  gboolean *hit, GError **error)
{
    *hit = FALSE;
    if (!statFile(dirfd, name, path, sb, error))
        return FALSE;
    if (lookup(cache, path, sb, info)) {
        *hit = TRUE;
        return TRUE;
    }
    if (!readFile(dirfd, name, path, sb, info, error))
        return FALSE;
    store(cache, path, sb, info);
    return TRUE;
}


void
spHeaderCacheSweep(SpHeaderCache *cache, const char *dir)
{
    GHashTableIter iter;
    gpointer key, value;

    g_mutex_lock(&cache->lock);
    g_hash_table_iter_init(&iter, cache->entries);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        Entry *entry = value;

        if (!spPathIsInDir(key, dir))
            continue;
        if (!entry->seen)
            g_hash_table_iter_remove(&iter);
        else
            entry->seen = FALSE;
    }
    g_mutex_unlock(&cache->lock);
}


guint
spHeaderCacheSize(SpHeaderCache *cache)
{
    guint n;

    g_mutex_lock(&cache->lock);
    n = g_hash_table_size(cache->entries);
    g_mutex_unlock(&cache->lock);
    return n;
}
