/*
 * pool_hosts.c: the hosts sharing the primary tier, each a dependent of
 * the templates its images back onto
 *
 * Each host's pool knows its own images (pool_chains.c); what the other
 * hosts' images depend on it learns from their records in the primary
 * tier (fs/host_records.h). A host counts a new instance in its record
 * before it writes the file, under the store's shared lock, and a host
 * changes a template only under the exclusive lock, after reading every
 * record: of two hosts racing, either the change sees the new dependent,
 * or the new instance finds its template gone. A record is never removed
 * for a host that stops: its disks still hold the instances.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "pool_private.h"
#include "stormpool/error.h"
#include "fs/host_records.h"

/* The system's host name, as a host record's name: characters a record's
 * file name cannot hold become '_'. */
static char *
systemHostName(void)
{
    g_autofree char *name = g_strndup(g_get_host_name(), SP_HOST_NAME_MAX);
    char *p;

    for (p = name; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr(".-_", *p))
            *p = '_';
    }
    if (name[0] == '.' || name[0] == '\0')
        return g_strdup("localhost");
    return g_steal_pointer(&name);
}


static char *
systemMachineId(void)
{
    g_autofree char *text = NULL;

    if (!g_file_get_contents("/etc/machine-id", &text, NULL, NULL))
        return g_strdup("");
    return g_strndup(g_strstrip(text), 32);
}


void
spPoolSetHost(SpPool *pool, const char *host, const char *machine)
{
    g_free(pool->host);
    g_free(pool->machine);
    pool->host = host ? g_strdup(host) : systemHostName();
    pool->machine = machine ? g_strdup(machine) : systemMachineId();
}


/* Instances being written count before their file exists, whether or
 * not a plan put them in the index (which counts them once more: too
 * many protects too much, never too little, and only while they are
 * written). Called with hosts_lock held. */
static void
addClaims(SpPool *pool, SpHostRecord *record)
{
    GHashTableIter iter;
    gpointer name, count;

    g_hash_table_iter_init(&iter, pool->host_claims);
    while (g_hash_table_iter_next(&iter, &name, &count))
        spHostRecordAdd(record, name, GPOINTER_TO_UINT(count));
}


/* spPoolBackingPinsTemplate once per distinct backing file (@seen). */
static gboolean
pinsTemplate(SpPool *pool, GHashTable *seen, const char *backing)
{
    gpointer pins;

    if (!g_hash_table_lookup_extended(seen, backing, NULL, &pins)) {
        pins = GINT_TO_POINTER(spPoolBackingPinsTemplate(pool, backing));
        g_hash_table_insert(seen, g_strdup(backing), pins);
    }
    return GPOINTER_TO_INT(pins);
}


/* This host's record from the index, brought up to date: each image of
 * the secondary tier (listed or not, planned or written) counts for the
 * template it backs onto directly or through a replica, and as versioned
 * when it does not name the template's file. Layers count through the
 * instance below them, which counts already. Instances being written
 * count as naming it until the next full count. */
static SpHostRecord *
ownRecord(SpPool *pool, GError **error)
{
    g_autoptr(SpHostRecord) record = spHostRecordNew(pool->host, pool->machine,
                                                     pool->secondary);
    g_autoptr(GHashTable) pins = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_autoptr(GPtrArray) entries = NULL;
    guint i;

    if (!spPoolChainsSync(pool, error))
        return NULL;
    entries = spPoolIndexEntries(pool);
    for (i = 0; i < entries->len; i++) {
        SpVolumeEntry *entry = g_ptr_array_index(entries, i);
        g_autofree char *template = NULL;

        if (entry->tier != SP_TIER_SECONDARY || !entry->backing_path ||
            !(template = spPoolTemplateOf(pool, entry->backing_path)))
            continue;
        spHostRecordAdd(record, template, 1);
        if (!pinsTemplate(pool, pins, entry->backing_path))
            spHostRecordAddVersioned(record, template, 1);
    }
    addClaims(pool, record);
    return g_steal_pointer(&record);
}


/* Write @record and remember it as what is published. Called with
 * hosts_lock held. */
static gboolean
writeRecord(SpPool *pool, SpHostRecord *record, GError **error)
{
    if (!spHostRecordWrite(pool->primary, record, error)) {
        spHostRecordFree(record);
        return FALSE;
    }
    g_clear_pointer(&pool->host_record, spHostRecordFree);
    pool->host_record = record;
    return TRUE;
}


/* Under the store's shared lock: a host changing a template reads every
 * record under the exclusive one, and a record being renamed into place
 * meanwhile may show it neither file (ESTALE or ENOENT on a network file
 * system, where the rename comes from another client). */
gboolean
spPoolHostsPublish(SpPool *pool, GError **error)
{
    SpHostRecord *record;
    gboolean ok;
    int store;

    if ((store = spHostsLock(pool->primary, FALSE, SP_HOSTS_LOCK_TIMEOUT_MS, error)) < 0)
        return FALSE;
    g_mutex_lock(&pool->hosts_lock);
    ok = (record = ownRecord(pool, error)) && writeRecord(pool, record, error);
    g_mutex_unlock(&pool->hosts_lock);
    close(store);
    return ok;
}


/* What was published, with one instance of @name more: a new instance
 * costs one small write, not a look at every file of the tiers. The
 * first one after a start counts everything. Called with hosts_lock. */
static gboolean
publishOneMore(SpPool *pool, const char *name, GError **error)
{
    SpHostRecord *record;
    GHashTableIter iter;
    gpointer key, count;

    if (!pool->host_record)
        return (record = ownRecord(pool, error)) && writeRecord(pool, record, error);
    record = spHostRecordNew(pool->host, pool->machine, pool->secondary);
    g_hash_table_iter_init(&iter, pool->host_record->templates);
    while (g_hash_table_iter_next(&iter, &key, &count))
        spHostRecordAdd(record, key, GPOINTER_TO_UINT(count));
    g_hash_table_iter_init(&iter, pool->host_record->versioned);
    while (g_hash_table_iter_next(&iter, &key, &count))
        spHostRecordAddVersioned(record, key, GPOINTER_TO_UINT(count));
    spHostRecordAdd(record, name, 1);
    return writeRecord(pool, record, error);
}


void
spPoolHostsUpdate(SpPool *pool)
{
    g_autoptr(GError) err = NULL;

    if (!spPoolHostsPublish(pool, &err))
        g_warning("cannot update this host's record in the primary tier '%s': %s",
                  pool->primary, err->message);
}


/* Count one instance of @name more (@delta +1) or fewer (-1) as being
 * written. */
static void
noteClaim(SpPool *pool, const char *name, int delta)
{
    g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&pool->hosts_lock);
    guint count = GPOINTER_TO_UINT(g_hash_table_lookup(pool->host_claims, name));

    count = delta > 0 ? count + 1 : count - 1;
    if (count)
        g_hash_table_insert(pool->host_claims, g_strdup(name), GUINT_TO_POINTER(count));
    else
        g_hash_table_remove(pool->host_claims, name);
}


gboolean
spPoolHostsClaim(SpPool *pool, const char *name, GError **error)
{
    g_autofree char *path = g_build_filename(pool->primary, name, NULL);
    gboolean ok;
    int lock;

    if ((lock = spHostsLock(pool->primary, FALSE, SP_HOSTS_LOCK_TIMEOUT_MS, error)) < 0)
        return FALSE;
    noteClaim(pool, name, +1);
    ok = access(path, F_OK) == 0;
    if (!ok)
        spErrorSetErrno(error, errno, "cannot create an instance of template '%s'", name);
    if (ok) {
        g_mutex_lock(&pool->hosts_lock);
        ok = publishOneMore(pool, name, error);
        g_mutex_unlock(&pool->hosts_lock);
    }
    close(lock);
    if (!ok)
        spPoolHostsClaimEnd(pool, name, FALSE);
    return ok;
}


/* A written instance is what the record already counts; one that was
 * never written is counted away at once. */
void
spPoolHostsClaimEnd(SpPool *pool, const char *name, gboolean written)
{
    noteClaim(pool, name, -1);
    if (!written)
        spPoolHostsUpdate(pool);
}


int
spPoolHostsLockChange(SpPool *pool, GError **error)
{
    return spHostsLock(pool->primary, TRUE, SP_HOSTS_LOCK_TIMEOUT_MS, error);
}


/* Append "HOST (N)" if the record @id counts dependents of the template
 * @name (@pinning: only those naming its file): another pool of this host
 * is named "HOST:TIER". */
static gboolean
addHostDependents(SpPool *pool, const char *id, const char *name, gboolean pinning,
                  GString *summary, GError **error)
{
    g_autoptr(SpHostRecord) record = NULL;
    g_autoptr(GError) err = NULL;
    gboolean same_host;
    guint count;

    if (!(record = spHostRecordRead(pool->primary, id, &err))) {
        if (g_error_matches(err, SP_ERROR, SP_ERROR_NOT_FOUND))
            return TRUE;        /* forgotten since it was listed */
        g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                    "the host record '%s' cannot be read, and may count dependents "
                    "of template '%s': %s", id, name, err->message);
        return FALSE;
    }
    count = spHostRecordCount(record, name);
    if (pinning)
        count -= MIN(count, spHostRecordVersioned(record, name));
    if (!count)
        return TRUE;
    same_host = strcmp(record->host, pool->host) == 0;
    g_string_append_printf(summary, "%s%s%s%s (%u)", summary->len ? ", " : "",
                           record->host, same_host ? ":" : "",
                           same_host ? record->tier : "", count);
    return TRUE;
}


static gboolean
hostsDependents(SpPool *pool, const char *name, gboolean pinning, char **summary,
                GError **error)
{
    g_autofree char *own = spHostRecordId(pool->host, pool->secondary);
    g_autoptr(GPtrArray) ids = NULL;
    g_autoptr(GString) text = g_string_new(NULL);
    guint i;

    *summary = NULL;
    if (!(ids = spHostRecordList(pool->primary, error)))
        return FALSE;
    for (i = 0; i < ids->len; i++) {
        const char *id = g_ptr_array_index(ids, i);

        if (strcmp(id, own) == 0)
            continue;           /* this pool's own images are known better */
        if (!addHostDependents(pool, id, name, pinning, text, error))
            return FALSE;
    }
    if (text->len)
        *summary = g_string_free(g_steal_pointer(&text), FALSE);
    return TRUE;
}


gboolean
spPoolHostsDependents(SpPool *pool, const char *name, char **summary, GError **error)
{
    return hostsDependents(pool, name, FALSE, summary, error);
}


gboolean
spPoolHostsPinning(SpPool *pool, const char *name, char **summary, GError **error)
{
    return hostsDependents(pool, name, TRUE, summary, error);
}


/* Whether the record @id names this host from another machine. Records
 * that cannot be read are left to the checks that need them. */
static gboolean
otherMachine(SpPool *pool, const char *id, char **machine)
{
    g_autoptr(SpHostRecord) record = spHostRecordRead(pool->primary, id, NULL);

    if (!record || strcmp(record->host, pool->host) != 0 || !*record->machine ||
        !*pool->machine || strcmp(record->machine, pool->machine) == 0)
        return FALSE;
    *machine = g_strdup(record->machine);
    return TRUE;
}


gboolean
spPoolHostsCheckName(SpPool *pool, GError **error)
{
    g_autoptr(GPtrArray) ids = NULL;
    g_autofree char *machine = NULL;
    guint i;

    if (!(ids = spHostRecordList(pool->primary, error)))
        return FALSE;
    for (i = 0; i < ids->len && !machine; i++)
        otherMachine(pool, g_ptr_array_index(ids, i), &machine);
    if (!machine)
        return TRUE;
    g_set_error(error, SP_ERROR, SP_ERROR_INVALID_STATE,
                "another machine (%s) shares the primary tier '%s' under this host's "
                "name '%s': give the hosts different names", machine,
                pool->primary, pool->host);
    return FALSE;
}
