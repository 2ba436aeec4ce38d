/*
 * template_versions.h: versions of a template kept for their dependents
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

/* A template replaced by a new version while images still need the old
 * one keeps that file, under the identity it had (template_replica.h),
 * in a hidden directory of the primary tier:
 *   PRIMARY/.stormpool-versions/TEMPLATE-NAME/IDENTITY
 * It is a hard link of the template's inode, made before the template's
 * name moves on, so its identity, its replicas and its hot set stay
 * those of the old version. The same directory holds the uploads of new
 * versions while their streams run (upload-XXXXXX). */
#define SP_VERSION_DIR ".stormpool-versions"
#define SP_VERSION_UPLOAD_PREFIX "upload-"

char *spVersionPath(const char *primary, const char *template_name, const char *identity);

/* If @path is a kept version in @primary, its template's name. Only
 * names the pool could have made pass, as for replicas: collection
 * unlinks what passes here. */
char *spVersionTemplateName(const char *primary, const char *path);
gboolean spVersionIsKept(const char *primary, const char *path);

/* Keep the template at @template_path (in @primary, named
 * @template_name) as a version: the path of the hard link, made if it is
 * missing. A @template_path that is a kept version already is returned
 * as it is. */
char *spVersionKeep(const char *primary, const char *template_name,
                    const char *template_path, GError **error);

/* The kept versions of @template_name (paths, sorted). */
GPtrArray *spVersionList(const char *primary, const char *template_name, GError **error);

/* The templates that have a version directory. */
GPtrArray *spVersionTemplates(const char *primary);

/* A new, empty file for the upload of a version of @template_name, with
 * @mode and owner @uid:@gid (-1 keeps ours). */
char *spVersionUploadNew(const char *primary, const char *template_name,
                         mode_t mode, uid_t uid, gid_t gid, GError **error);

/* Whether the directory entry @name is the upload of a version. */
gboolean spVersionIsUploadName(const char *name);

/* Whether the files @a and @b hold the same bytes. */
gboolean spVersionSameBytes(const char *a, const char *b, gboolean *same, GError **error);

/* Make the file @source the template @template_path in one rename: the
 * template is either the old file or the new one, also after a crash.
 * With @keep_source, @source stays (a kept version coming back, by a
 * link); else it is moved (a finished upload). */
gboolean spVersionPublish(const char *source, const char *template_path,
                          gboolean keep_source, GError **error);

/* Remove a kept version or an upload, and its directory when it is the
 * last file there. */
gboolean spVersionRemove(const char *path, GError **error);

G_END_DECLS
