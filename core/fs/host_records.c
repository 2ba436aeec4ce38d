/*
 * host_records.c: what each host's images depend on, published in the
 * shared primary tier
 *
 * A record is a small text file, written whole and renamed into place, so
 * that a reader on another host sees the old record or the new one:
 *
 *   stormpool-host-record 1
 *   host lab-a
 *   machine 5f0c6b1e9b0a4c1d8e2f3a4b5c6d7e8f
 *   tier /srv/ssd/lab
 *   template 3 win10.qcow2
 *   versioned 2 win10.qcow2
 *
 * The count comes before the name, which may hold spaces. A "versioned"
 * line follows its template's line: of its dependents, how many reach
 * the template only through a replica or a kept version (a new version
 * of the template leaves those alone; the others name its file).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host_records.h"
#include "volume_name.h"
#include "stormpool/error.h"
#include "util/atomic_file.h"
#include "util/dir.h"
#include "util/full_io.h"

#define RECORD_MAGIC "stormpool-host-record 1"
#define LOCK_FILE ".lock"
#define LOCK_POLL_MS 10

SpHostRecord *
spHostRecordNew(const char *host, const char *machine, const char *tier)
{
    SpHostRecord *record = g_new0(SpHostRecord, 1);

    record->host = g_strdup(host);
    record->machine = g_strdup(machine ? machine : "");
    record->tier = g_strdup(tier);
    record->templates = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    record->versioned = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    return record;
}


void
spHostRecordFree(SpHostRecord *record)
{
    if (!record)
        return;
    g_free(record->host);
    g_free(record->machine);
    g_free(record->tier);
    g_hash_table_unref(record->templates);
    g_hash_table_unref(record->versioned);
    g_free(record);
}


/* The two counts a record keeps per template name (images depending on
 * it; those of them reaching it only through a replica or kept version)
 * are tables of the same kind. */
static guint
countIn(GHashTable *counts, const char *name)
{
    return GPOINTER_TO_UINT(g_hash_table_lookup(counts, name));
}


static void
addTo(GHashTable *counts, const char *name, guint count)
{
    guint now = countIn(counts, name);

    g_hash_table_insert(counts, g_strdup(name), GUINT_TO_POINTER(now + count));
}


void
spHostRecordAdd(SpHostRecord *record, const char *name, guint count)
{
    addTo(record->templates, name, count);
}


guint
spHostRecordCount(const SpHostRecord *record, const char *name)
{
    return countIn(record->templates, name);
}


void
spHostRecordAddVersioned(SpHostRecord *record, const char *name, guint count)
{
    addTo(record->versioned, name, count);
}


guint
spHostRecordVersioned(const SpHostRecord *record, const char *name)
{
    return countIn(record->versioned, name);
}


char *
spHostRecordId(const char *host, const char *tier)
{
    g_autofree char *hash = g_compute_checksum_for_string(G_CHECKSUM_SHA256, tier, -1);

    return g_strdup_printf("%s.%.8s", host, hash);
}


gboolean
spHostNameValidate(const char *name, GError **error)
{
    gsize len = strlen(name);
    gsize i;

    for (i = 0; i < len; i++) {
        if (!g_ascii_isalnum(name[i]) && !strchr(".-_", name[i]))
            break;
    }
    if (len == 0 || len > SP_HOST_NAME_MAX || i < len || name[0] == '.') {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "invalid host name '%s': 1 to %d letters, digits, '.', '-' or '_', "
                    "not starting with '.'", name, SP_HOST_NAME_MAX);
        return FALSE;
    }
    return TRUE;
}


/* ---- the text ------------------------------------------------------------- */

static gint
compareNames(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}


char *
spHostRecordFormat(const SpHostRecord *record)
{
    g_autoptr(GString) text = g_string_new(RECORD_MAGIC "\n");
    g_autofree gpointer *names = NULL;
    guint n = 0;
    guint i;

    g_string_append_printf(text, "host %s\nmachine %s\ntier %s\n", record->host,
                           record->machine, record->tier);
    names = g_hash_table_get_keys_as_array(record->templates, &n);
    qsort(names, n, sizeof(*names), compareNames);
    for (i = 0; i < n; i++) {
        guint versioned = spHostRecordVersioned(record, names[i]);

        g_string_append_printf(text, "template %u %s\n",
                               spHostRecordCount(record, names[i]), (char *) names[i]);
        if (versioned)
            g_string_append_printf(text, "versioned %u %s\n",
                                   MIN(versioned, spHostRecordCount(record, names[i])),
                                   (char *) names[i]);
    }
    return g_string_free(g_steal_pointer(&text), FALSE);
}


static gboolean
badRecord(GError **error, guint line, const char *why)
{
    g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                "malformed host record, line %u: %s", line, why);
    return FALSE;
}


static gboolean
parseCount(const char *text, guint *count, const char **rest)
{
    guint64 value = 0;
    const char *p = text;

    while (g_ascii_isdigit(*p) && value <= G_MAXUINT)
        value = value * 10 + (guint64) (*p++ - '0');
    if (p == text || *p != ' ' || value == 0 || value > G_MAXUINT)
        return FALSE;
    *count = (guint) value;
    *rest = p + 1;
    return TRUE;
}


/* One "template COUNT NAME" line. */
static gboolean
parseTemplate(SpHostRecord *record, const char *args, guint line, GError **error)
{
    const char *name = NULL;
    guint count = 0;

    if (!parseCount(args, &count, &name))
        return badRecord(error, line, "expected 'template COUNT NAME', COUNT above 0");
    if (!spVolumeNameValidate(name, NULL))
        return badRecord(error, line, "invalid template name");
    if (g_hash_table_contains(record->templates, name))
        return badRecord(error, line, "template listed twice");
    spHostRecordAdd(record, name, count);
    return TRUE;
}


/* One "versioned COUNT NAME" line, after its template's line, counting
 * at most as many as that line. */
static gboolean
parseVersioned(SpHostRecord *record, const char *args, guint line, GError **error)
{
    const char *name = NULL;
    guint count = 0;

    if (!parseCount(args, &count, &name))
        return badRecord(error, line, "expected 'versioned COUNT NAME', COUNT above 0");
    if (!g_hash_table_contains(record->templates, name))
        return badRecord(error, line, "versioned count of a template not listed before");
    if (g_hash_table_contains(record->versioned, name))
        return badRecord(error, line, "versioned count listed twice");
    if (count > spHostRecordCount(record, name))
        return badRecord(error, line, "versioned count above the template's");
    spHostRecordAddVersioned(record, name, count);
    return TRUE;
}


static gboolean
isMachineId(const char *text)
{
    gsize len = strlen(text);
    gsize i;

    for (i = 0; i < len && g_ascii_isxdigit(text[i]); i++)
        ;
    return i == len && len <= 32;
}


/* An absolute path, without control characters (the record is lines). */
static gboolean
isTierPath(const char *text)
{
    const char *p;

    for (p = text; *p; p++) {
        if (g_ascii_iscntrl(*p))
            return FALSE;
    }
    return text[0] == '/' && p - text <= 4096;
}


/* Line @line (1-based) of a record: its header lines in order, then
 * templates. */
static gboolean
parseLine(SpHostRecord *record, const char *text, guint line, GError **error)
{
    if (line == 1)
        return strcmp(text, RECORD_MAGIC) == 0 || badRecord(error, line, "not a host record");
    if (line == 2) {
        if (!g_str_has_prefix(text, "host ") || !spHostNameValidate(text + 5, NULL))
            return badRecord(error, line, "expected 'host NAME'");
        record->host = g_strdup(text + 5);
        return TRUE;
    }
    if (line == 3) {
        if (!g_str_has_prefix(text, "machine ") || !isMachineId(text + 8))
            return badRecord(error, line, "expected 'machine ID'");
        record->machine = g_strdup(text + 8);
        return TRUE;
    }
    if (line == 4) {
        if (!g_str_has_prefix(text, "tier ") || !isTierPath(text + 5))
            return badRecord(error, line, "expected 'tier PATH'");
        record->tier = g_strdup(text + 5);
        return TRUE;
    }
    if (g_str_has_prefix(text, "versioned "))
        return parseVersioned(record, text + 10, line, error);
    if (!g_str_has_prefix(text, "template "))
        return badRecord(error, line, "expected 'template COUNT NAME'");
    return parseTemplate(record, text + 9, line, error);
}


SpHostRecord *
spHostRecordParse(const char *text, gsize len, GError **error)
{
    g_autoptr(SpHostRecord) record = spHostRecordNew(NULL, NULL, NULL);
    g_auto(GStrv) lines = NULL;
    g_autofree char *copy = NULL;
    guint i;

    if (len > SP_HOST_RECORD_MAX || memchr(text, '\0', len) ||
        len == 0 || text[len - 1] != '\n') {
        badRecord(error, 0, "not a complete text file");
        return NULL;
    }
    copy = g_strndup(text, len - 1);
    lines = g_strsplit(copy, "\n", -1);
    g_clear_pointer(&record->host, g_free);
    g_clear_pointer(&record->machine, g_free);
    for (i = 0; lines[i]; i++) {
        if (!parseLine(record, lines[i], i + 1, error))
            return NULL;
    }
    if (i < 4) {
        badRecord(error, i, "the record ends before its host, machine and tier");
        return NULL;
    }
    return g_steal_pointer(&record);
}


/* ---- the files ------------------------------------------------------------ */

static char *
hostsDir(const char *primary)
{
    return g_build_filename(primary, SP_HOSTS_DIR, NULL);
}


static gboolean
makeHostsDir(const char *primary, GError **error)
{
    g_autofree char *dir = hostsDir(primary);

    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return spErrorSetErrno(error, errno, "cannot create the hosts directory '%s'", dir);
    return TRUE;
}


gboolean
spHostRecordWrite(const char *primary, const SpHostRecord *record, GError **error)
{
    g_autofree char *id = spHostRecordId(record->host, record->tier);
    g_autofree char *path = g_build_filename(primary, SP_HOSTS_DIR, id, NULL);
    g_autofree char *text = spHostRecordFormat(record);
    g_autoptr(SpAtomicFile) file = NULL;

    if (!makeHostsDir(primary, error) || !(file = spAtomicFileBegin(path, 0644, error)))
        return FALSE;
    return spFullWrite(spAtomicFileFd(file), text, strlen(text), error,
                       "cannot write '%s'", spAtomicFileTmpPath(file)) &&
           spAtomicFileCommit(file, TRUE, error);
}


static char *
readRecordFile(const char *path, gsize *len, GError **error)
{
    g_autofree char *text = g_malloc(SP_HOST_RECORD_MAX + 1);
    gssize got;
    int fd;

    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        spErrorSetErrno(error, errno, "cannot open the host record '%s'", path);
        return NULL;
    }
    got = spFullRead(fd, text, SP_HOST_RECORD_MAX + 1, error,
                     "cannot read the host record '%s'", path);
    close(fd);
    if (got < 0)
        return NULL;
    *len = (gsize) got;
    return g_steal_pointer(&text);
}


SpHostRecord *
spHostRecordRead(const char *primary, const char *id, GError **error)
{
    g_autofree char *path = g_build_filename(primary, SP_HOSTS_DIR, id, NULL);
    g_autoptr(GError) err = NULL;
    g_autofree char *text = NULL;
    g_autofree char *own_id = NULL;
    SpHostRecord *record;
    gsize len = 0;

    if (!(text = readRecordFile(path, &len, error)))
        return NULL;
    if (!(record = spHostRecordParse(text, len, &err))) {
        g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE, "%s: %s", path, err->message);
        return NULL;
    }
    own_id = spHostRecordId(record->host, record->tier);
    if (strcmp(own_id, id) != 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                    "%s: the record is that of host '%s' and tier '%s'", path,
                    record->host, record->tier);
        g_clear_pointer(&record, spHostRecordFree);
    }
    return record;
}


gboolean
spHostRecordRemove(const char *primary, const char *id, GError **error)
{
    g_autofree char *path = g_build_filename(primary, SP_HOSTS_DIR, id, NULL);

    if (unlink(path) < 0 && errno != ENOENT)
        return spErrorSetErrno(error, errno, "cannot remove the host record '%s'", path);
    return TRUE;
}


GPtrArray *
spHostRecordList(const char *primary, GError **error)
{
    g_autofree char *dir = hostsDir(primary);
    g_autoptr(GPtrArray) hosts = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GDir) listing = NULL;
    const char *name;

    if (access(dir, F_OK) < 0 && errno == ENOENT)
        return g_steal_pointer(&hosts);
    if (!(listing = spDirOpen(dir, error)))
        return NULL;
    /* The lock and temporary files start with '.', host names never;
     * any other file is a record, and read as one (a damaged record is
     * not skipped: it may count dependents). */
    while ((name = g_dir_read_name(listing))) {
        if (name[0] != '.')
            g_ptr_array_add(hosts, g_strdup(name));
    }
    g_ptr_array_sort(hosts, compareNames);
    return g_steal_pointer(&hosts);
}


/* ---- the lock ------------------------------------------------------------- */

/* OFD locks belong to the open file, not the process: two threads of a
 * daemon exclude each other as two hosts do. */
static int
tryLock(int fd, gboolean exclusive)
{
    struct flock lock = { .l_type = exclusive ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET };

    return fcntl(fd, F_OFD_SETLK, &lock);
}


static int
openLockFile(const char *primary, GError **error)
{
    g_autofree char *path = g_build_filename(primary, SP_HOSTS_DIR, LOCK_FILE, NULL);
    int fd;

    if (!makeHostsDir(primary, error))
        return -1;
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0)
        spErrorSetErrno(error, errno, "cannot open the hosts' lock '%s'", path);
    return fd;
}


static int
lockFailed(int fd, const char *primary, int err, guint waited, GError **error)
{
    close(fd);
    if (err == EAGAIN || err == EACCES || err == EINTR)
        g_set_error(error, SP_ERROR, SP_ERROR_IN_USE,
                    "another host has held the lock of the template store '%s' for %u ms; "
                    "try again", primary, waited);
    else
        spErrorSetErrno(error, err, "cannot lock the template store '%s'", primary);
    return -1;
}


int
spHostsLock(const char *primary, gboolean exclusive, guint timeout_ms, GError **error)
{
    guint waited = 0;
    int fd;

    if ((fd = openLockFile(primary, error)) < 0)
        return -1;
    while (tryLock(fd, exclusive) < 0) {
        int err = errno;
        gboolean busy = err == EAGAIN || err == EACCES || err == EINTR;

        if (!busy || waited >= timeout_ms)
            return lockFailed(fd, primary, err, waited, error);
        g_usleep(LOCK_POLL_MS * 1000);
        waited += LOCK_POLL_MS;
    }
    return fd;
}


gboolean
spHostsRemoveDir(const char *primary, const char *id, GError **error)
{
    g_autofree char *dir = hostsDir(primary);
    g_autofree char *lock = g_build_filename(dir, LOCK_FILE, NULL);

    if (!spHostRecordRemove(primary, id, error))
        return FALSE;
    if (unlink(lock) < 0 && errno != ENOENT)
        return spErrorSetErrno(error, errno, "cannot remove '%s'", lock);
    if (rmdir(dir) < 0 && errno != ENOENT)
        return spErrorSetErrno(error, errno, "cannot remove the hosts directory '%s'", dir);
    return TRUE;
}
