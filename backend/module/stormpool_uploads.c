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

static GMutex uploadsLock;
static GHashTable *uploads;     /* paths uploads were started into */


void
stormpoolUploadStarted(const char *path)
{
    g_mutex_lock(&uploadsLock);
    if (!uploads)
        uploads = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_hash_table_add(uploads, g_strdup(path));
    g_mutex_unlock(&uploadsLock);
}


bool
stormpoolTemplateUploading(const char *path)
{
    g_autoptr(GError) err = NULL;
    gboolean writing = FALSE;

    g_mutex_lock(&uploadsLock);
    if (!uploads || !g_hash_table_contains(uploads, path)) {
        g_mutex_unlock(&uploadsLock);
        return false;
    }
    if (!spProcessWritesFile(path, &writing, &err) && err->code != SP_ERROR_NOT_FOUND)
        VIR_WARN("cannot tell whether an upload into '%s' goes on: %s", path, err->message);
    if (!writing)
        g_hash_table_remove(uploads, path);
    g_mutex_unlock(&uploadsLock);
    return writing;
}
