/*
 * host_records.h: what each host's images depend on, published in the
 * primary tier that several hosts share
 *
 * A template store on a distributed file system is shared by the pools of
 * several hosts, each with its own secondary tier (and one host may run
 * several pools on one store). Every pool writes, in
 *   PRIMARY/.stormpool-hosts/HOST.TIERHASH
 * how many of its images depend on each template, and reads the others'
 * records before it changes a template. The records stay when a host goes
 * down: its disks still hold the instances. An OFD lock on
 *   PRIMARY/.stormpool-hosts/.lock
 * orders a host adding a dependent (shared) against a host changing a
 * template (exclusive); the file system carries it across hosts.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define SP_HOSTS_DIR ".stormpool-hosts"
#define SP_HOST_NAME_MAX 64
/* A record larger than this is not one of ours. */
#define SP_HOST_RECORD_MAX (1024 * 1024)

typedef struct {
    char *host;             /* the host's name */
    char *machine;          /* its /etc/machine-id, or "" */
    char *tier;             /* the pool's secondary tier on that host */
    GHashTable *templates;  /* template name -> dependents (GUINT_TO_POINTER) */
    GHashTable *versioned;  /* of those, the ones that reach the template only
                             * through a replica or a kept version, never
                             * naming its file itself: a new version of the
                             * template leaves them alone */
} SpHostRecord;

SpHostRecord *spHostRecordNew(const char *host, const char *machine, const char *tier);

/* The record's file name in SP_HOSTS_DIR: "HOST.TIERHASH", the host's
 * name and 8 hex digits of a hash of the tier's path. */
char *spHostRecordId(const char *host, const char *tier);
void spHostRecordFree(SpHostRecord *record);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SpHostRecord, spHostRecordFree)

/* @count more images of the host depend on the template @name. */
void spHostRecordAdd(SpHostRecord *record, const char *name, guint count);

/* How many images of the host depend on the template @name. */
guint spHostRecordCount(const SpHostRecord *record, const char *name);

/* @count of the images counted for @name (spHostRecordAdd) do not name
 * the template's own file; how many. A record written before versions
 * existed has none: all its dependents name the file, as far as a
 * reader can tell. */
void spHostRecordAddVersioned(SpHostRecord *record, const char *name, guint count);
guint spHostRecordVersioned(const SpHostRecord *record, const char *name);

/* A host name is a file name of SP_HOSTS_DIR: 1 to SP_HOST_NAME_MAX
 * letters, digits, '.', '-' or '_', not starting with '.'. */
gboolean spHostNameValidate(const char *name, GError **error);

/* The text of a record, templates sorted by name. */
char *spHostRecordFormat(const SpHostRecord *record);

/* Parse the @len bytes of @text: another host wrote them, so anything
 * malformed is an error (SP_ERROR_BAD_IMAGE), never a guess. */
SpHostRecord *spHostRecordParse(const char *text, gsize len, GError **error);

/* Replace @record's file in @primary, atomically. */
gboolean spHostRecordWrite(const char *primary, const SpHostRecord *record, GError **error);

/* The record @id in @primary (SP_ERROR_NOT_FOUND if there is none). */
SpHostRecord *spHostRecordRead(const char *primary, const char *id, GError **error);

/* Remove the record @id from @primary; none is no error. */
gboolean spHostRecordRemove(const char *primary, const char *id, GError **error);

/* The ids of the records in @primary, sorted. */
GPtrArray *spHostRecordList(const char *primary, GError **error);

/* Take the hosts' lock of @primary, shared or @exclusive, waiting up to
 * @timeout_ms for another host to let go (then SP_ERROR_IN_USE); close
 * the returned descriptor to release it. */
int spHostsLock(const char *primary, gboolean exclusive, guint timeout_ms, GError **error);

/* The hosts directory holds nothing but the record @id and the lock:
 * remove them and it (pool-delete of the last pool on the store). */
gboolean spHostsRemoveDir(const char *primary, const char *id, GError **error);

G_END_DECLS
