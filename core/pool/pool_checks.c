/*
 * pool_checks.c: the checks before a volume changes, so that each refusal
 * is one whole sentence saying what was refused and why
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>

#include "pool_private.h"
#include "stormpool/error.h"
#include "fs/image_lock.h"
#include "fs/backing_path.h"

static const char *const changeVerbs[] = {
    [SP_CHANGE_DELETE] = "delete",
    [SP_CHANGE_WIPE] = "wipe",
    [SP_CHANGE_RESIZE] = "resize",
    [SP_CHANGE_UPLOAD] = "upload into",
};

/* How many dependents an error message names before "and N more". */
#define DEPENDENTS_LISTED 5

/* Names of @entries (of SpVolumeEntry), for a summary. */
static GPtrArray *
entryNames(GPtrArray *entries)
{
    GPtrArray *names = g_ptr_array_new();
    guint i;

    for (i = 0; i < entries->len; i++)
        g_ptr_array_add(names, ((SpVolumeEntry *) g_ptr_array_index(entries, i))->name);
    return names;
}


/* The directories of @entries, quoted, in the order met: "'/srv/ssd/lab'",
 * or "'/srv/ssd/lab' and '/dev/shm/lab-tmp'" when layers of the transient
 * tier back onto the volume too. */
static char *
entryDirs(GPtrArray *entries)
{
    g_autoptr(GString) dirs = g_string_new(NULL);
    guint i;

    for (i = 0; i < entries->len; i++) {
        SpVolumeEntry *entry = g_ptr_array_index(entries, i);
        g_autofree char *dir = g_path_get_dirname(entry->path);
        g_autofree char *quoted = g_strdup_printf("'%s'", dir);

        if (strstr(dirs->str, quoted))
            continue;
        if (dirs->len > 0)
            g_string_append(dirs, " and ");
        g_string_append(dirs, quoted);
    }
    return g_string_free(g_steal_pointer(&dirs), FALSE);
}


/* What backs onto any of @paths (NULL-terminated) now, the index brought
 * up to date first: a layer made a moment ago counts. */
static GPtrArray *
dependentsNow(SpPool *pool, const char *const *paths, GError **error)
{
    if (!spPoolChainsSync(pool, error))
        return NULL;
    return spPoolChainDependents(pool, paths, error);
}


/* The volumes that back onto the template at @path: directly, or
 * through one of its replicas in the secondary tier or in the RAM tier. */
GPtrArray *
spPoolTemplateDependents(SpPool *pool, const char *name, const char *path, GError **error)
{
    g_autoptr(GPtrArray) replicas = NULL;
    g_autoptr(GPtrArray) paths = g_ptr_array_new();
    guint i;

    if (!(replicas = spPoolReplicaListAll(pool, error)))
        return NULL;
    g_ptr_array_add(paths, (gpointer) path);
    for (i = 0; i < replicas->len; i++) {
        SpReplicaInfo *replica = g_ptr_array_index(replicas, i);

        if (strcmp(replica->template_name, name) == 0)
            g_ptr_array_add(paths, replica->path);
    }
    g_ptr_array_add(paths, NULL);
    return dependentsNow(pool, (const char * const *) paths->pdata, error);
}


/* The refusal naming this host's dependents (@names), and other hosts'
 * (@remote, "lab-b (2)"), either of which may be missing. */
static gboolean
reportDependents(const char *name, SpChange change, GPtrArray *names, const char *remote,
                 GError **error)
{
    g_autofree char *summary = NULL;

    if (names->len == 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                    "cannot %s template '%s': instances of other pools depend on it: %s",
                    changeVerbs[change], name, remote);
        return FALSE;
    }
    summary = spTemplateDependentsSummary(names, DEPENDENTS_LISTED);
    g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                "cannot %s template '%s': %u instance(s) depend on it: %s%s%s",
                changeVerbs[change], name, names->len, summary,
                remote ? "; and of other pools: " : "", remote ? remote : "");
    return FALSE;
}


/* Refuse to change a template while instances depend on it, on this host
 * or on another sharing the primary tier. */
gboolean
spPoolCheckNoDependents(SpPool *pool, const char *name, const char *path,
                        SpChange change, GError **error)
{
    g_autoptr(GPtrArray) dependents = NULL;
    g_autoptr(GPtrArray) names = NULL;
    g_autofree char *remote = NULL;

    if (!(dependents = spPoolTemplateDependents(pool, name, path, error)) ||
        !spPoolHostsDependents(pool, name, &remote, error))
        return FALSE;
    if (dependents->len == 0 && !remote)
        return TRUE;
    names = entryNames(dependents);
    return reportDependents(name, change, names, remote, error);
}


/* Layers that back onto an instance or a layer, whoever made them: an
 * external snapshot (virsh snapshot-create-as --disk-only), a blockcopy
 * destination, a qemu-img overlay. Deleting or resetting the volume
 * would take their data's base away. */
gboolean
spPoolCheckNoLayers(SpPool *pool, const char *name, const char *path,
                    SpChange change, GError **error)
{
    const char *paths[] = { path, NULL };
    g_autoptr(GPtrArray) dependents = NULL;
    g_autoptr(GPtrArray) names = NULL;
    g_autoptr(SpVolumeEntry) self = NULL;
    g_autofree char *summary = NULL;
    g_autofree char *dirs = NULL;

    if (!(dependents = dependentsNow(pool, paths, error)))
        return FALSE;
    if (dependents->len == 0)
        return TRUE;
    self = spPoolIndexLookup(pool, name);
    names = entryNames(dependents);
    summary = spTemplateDependentsSummary(names, DEPENDENTS_LISTED);
    dirs = entryDirs(dependents);
    g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                "cannot %s %s '%s': %u layer(s) in %s back onto it: %s",
                changeVerbs[change], spVolumeRoleName(self ? self->role : SP_ROLE_INSTANCE),
                name, names->len, dirs, summary);
    return FALSE;
}


static gboolean
reportInUse(const char *name, SpChange change, GError **error)
{
    g_clear_error(error);
    g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                "cannot %s '%s': it is in use by a running guest or "
                "another QEMU process (its image is locked)", changeVerbs[change], name);
    return FALSE;
}


/* libvirt's storage driver knows nothing of domains, so a volume in use
 * is recognised the way QEMU itself protects images: by its image locks.
 * That also covers a QEMU started by hand. A volume that is gone is not
 * in use. */
gboolean
spPoolCheckNotInUse(const char *name, const char *path, SpChange change, GError **error)
{
    g_autoptr(GError) err = NULL;
    gboolean in_use = FALSE;

    if (!spImageInUse(path, &in_use, &err)) {
        if (g_error_matches(err, SP_ERROR, SP_ERROR_NOT_FOUND))
            return TRUE;
        g_propagate_error(error, g_steal_pointer(&err));
        return FALSE;
    }
    return !in_use || reportInUse(name, change, error);
}


/* Like spPoolCheckNotInUse, but keeps QEMU out until the returned
 * descriptor is closed, for changes that must not race a guest start. */
int
spPoolLockNotInUse(const char *name, const char *path, SpChange change, GError **error)
{
    int fd;

    if ((fd = spImageLockExclusive(path, error)) >= 0)
        return fd;
    if (g_error_matches(*error, SP_ERROR, SP_ERROR_IN_USE))
        reportInUse(name, change, error);
    return -1;
}


/* A template vol-upload is still writing may neither change nor serve
 * new instances (pool_uploads.c says how the pool knows). */
gboolean
spPoolCheckNotUploading(SpPool *pool, const char *name, const char *path, GError **error)
{
    if (!spPoolTemplateUploading(pool, path))
        return TRUE;
    g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                "template '%s' is still being written by vol-upload; try again "
                "when the upload has finished", name);
    return FALSE;
}


/* Checks before a change of the template at @path: no upload under way,
 * no instance depending on it. */
gboolean
spPoolCheckTemplateChange(SpPool *pool, const char *name, const char *path,
                          SpChange change, GError **error)
{
    return spPoolCheckNotUploading(pool, name, path, error) &&
           spPoolCheckNoDependents(pool, name, path, change, error);
}
