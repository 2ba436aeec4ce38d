/*
 * stormpool_uploads.c: templates that vol-upload is still writing
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

#include <config.h>

#include "internal.h"
#include "virlog.h"

#include "stormpool/error.h"
#include "stormpool/own_writers.h"
#include "stormpool_module.h"

#define VIR_FROM_THIS VIR_FROM_STORAGE

VIR_LOG_INIT("storage.storage_backend_stormpool.uploads");

typedef enum {
    UPLOAD_OPENING = 1,     /* the stream's descriptor is being opened */
    UPLOAD_OPEN,            /* streaming, as long as the descriptor is open */
} UploadState;

static GMutex uploadsLock;
static GHashTable *uploads;     /* path -> UploadState */


static void
stormpoolUploadSet(const char *path,
                   UploadState state)
{
    g_mutex_lock(&uploadsLock);
    if (!uploads)
        uploads = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_hash_table_insert(uploads, g_strdup(path), GINT_TO_POINTER(state));
    g_mutex_unlock(&uploadsLock);
}


static void
stormpoolUploadForget(const char *path,
                      UploadState state)
{
    g_mutex_lock(&uploadsLock);
    if (uploads && GPOINTER_TO_INT(g_hash_table_lookup(uploads, path)) == (int) state)
        g_hash_table_remove(uploads, path);
    g_mutex_unlock(&uploadsLock);
}


/* Registered before the stream exists, so that no check can fall into
 * the moment between the checks of vol-upload and its first write. */
void
stormpoolUploadOpening(const char *path)
{
    stormpoolUploadSet(path, UPLOAD_OPENING);
}


void
stormpoolUploadOpened(const char *path,
                      bool ok)
{
    if (ok)
        stormpoolUploadSet(path, UPLOAD_OPEN);
    else
        stormpoolUploadForget(path, UPLOAD_OPENING);
}


bool
stormpoolTemplateUploading(const char *path)
{
    g_autoptr(GError) err = NULL;
    gboolean writing = FALSE;
    UploadState state = 0;

    g_mutex_lock(&uploadsLock);
    if (uploads)
        state = GPOINTER_TO_INT(g_hash_table_lookup(uploads, path));
    g_mutex_unlock(&uploadsLock);
    if (state != UPLOAD_OPEN)
        return state == UPLOAD_OPENING;

    /* The scan reads /proc without the lock held. When it cannot tell,
     * the upload is taken to go on: a refusal can be retried, a
     * half-written template copied into replicas cannot be undone. */
    if (!spProcessWritesFile(path, &writing, &err)) {
        if (err->code == SP_ERROR_NOT_FOUND) {
            stormpoolUploadForget(path, UPLOAD_OPEN);
            return false;
        }
        VIR_WARN("cannot tell whether an upload into '%s' goes on: %s", path, err->message);
        return true;
    }
    if (!writing)
        stormpoolUploadForget(path, UPLOAD_OPEN);
    return writing;
}
