/*
 * pool_uploads.c: templates that vol-upload is still writing
 *
 * The storage driver's upload returns as soon as the stream is set up;
 * the data then arrives through a descriptor of the daemon's own, with no
 * image lock and no callback for the backend when it ends. Instances and
 * replicas made from a template in that state would read it half
 * written, so the pool remembers where uploads went and asks the kernel
 * whether the daemon still has the file open for writing.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <unistd.h>

#include "pool_private.h"
#include "stormpool/error.h"
#include "fs/own_writers.h"

typedef enum {
    UPLOAD_NONE,
    UPLOAD_OPENING,         /* the stream's descriptor is being opened */
    UPLOAD_OPEN,            /* streaming, as long as the descriptor is open */
} UploadState;


static UploadState
uploadState(SpPool *pool, const char *path)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->uploads_lock);

    return GPOINTER_TO_INT(g_hash_table_lookup(pool->uploads, path));
}


static void
uploadForget(SpPool *pool, const char *path, UploadState state)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->uploads_lock);

    if (GPOINTER_TO_INT(g_hash_table_lookup(pool->uploads, path)) == (int) state)
        g_hash_table_remove(pool->uploads, path);
}


void
spPoolUploadSet(SpPool *pool, const char *path, gboolean open)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->uploads_lock);

    g_hash_table_insert(pool->uploads, g_strdup(path),
                        GINT_TO_POINTER(open ? UPLOAD_OPEN : UPLOAD_OPENING));
}


gboolean
spPoolTemplateUploading(SpPool *pool, const char *path)
{
    g_autoptr(GError) err = NULL;
    gboolean writing = FALSE;
    UploadState state = uploadState(pool, path);

    if (state != UPLOAD_OPEN)
        return state == UPLOAD_OPENING;

    /* The scan reads /proc without the lock held. When it cannot tell,
     * the upload is taken to go on: a refusal can be retried, a
     * half-written template copied into replicas cannot be undone. */
    if (!spProcessWritesFile(path, &writing, &err)) {
        if (g_error_matches(err, SP_ERROR, SP_ERROR_NOT_FOUND)) {
            uploadForget(pool, path, UPLOAD_OPEN);
            return FALSE;
        }
        g_warning("cannot tell whether an upload into '%s' goes on: %s", path, err->message);
        return TRUE;
    }
    if (!writing)
        uploadForget(pool, path, UPLOAD_OPEN);
    return writing;
}


void
spPoolUploadOpened(SpPool *pool, const char *path, gboolean ok)
{
    if (ok)
        spPoolUploadSet(pool, path, TRUE);
    else
        uploadForget(pool, path, UPLOAD_OPENING);
}


/* An upload of a version holds its file's image locks for as long as
 * this daemon lives, so that another pool sharing the primary tier (on
 * this host or another) never takes it for one whose daemon died. */
typedef struct {
    char *path;
    int lock;
} VersionUpload;


void
spPoolVersionUploadFree(gpointer data)
{
    VersionUpload *upload = data;

    if (upload->lock >= 0)
        close(upload->lock);
    g_free(upload->path);
    g_free(upload);
}


void
spPoolVersionUploadSet(SpPool *pool, const char *name, const char *path, int lock)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->uploads_lock);
    VersionUpload *upload = g_new0(VersionUpload, 1);

    upload->path = g_strdup(path);
    upload->lock = lock;
    g_hash_table_insert(pool->version_uploads, g_strdup(name), upload);
}


char *
spPoolVersionUploadOf(SpPool *pool, const char *name)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->uploads_lock);
    VersionUpload *upload = g_hash_table_lookup(pool->version_uploads, name);

    return upload ? g_strdup(upload->path) : NULL;
}


gboolean
spPoolVersionUploadTake(SpPool *pool, const char *name)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->uploads_lock);

    return g_hash_table_remove(pool->version_uploads, name);
}


GPtrArray *
spPoolVersionUploadNames(SpPool *pool)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->uploads_lock);
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    GHashTableIter iter;
    gpointer key;

    g_hash_table_iter_init(&iter, pool->version_uploads);
    while (g_hash_table_iter_next(&iter, &key, NULL))
        g_ptr_array_add(names, g_strdup(key));
    return names;
}
