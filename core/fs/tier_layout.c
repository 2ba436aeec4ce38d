/*
 * tier_layout.c: the two directories of a stormpool pool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "fs/tier_layout.h"

const char *
spTierName(SpTier tier)
{
    return tier == SP_TIER_PRIMARY ? "primary" : "secondary";
}


char *
spTierPathNormalise(const char *path)
{
    GString *out = g_string_sized_new(strlen(path));
    const char *p;

    for (p = path; *p; p++) {
        if (*p == '/' && out->len > 0 && out->str[out->len - 1] == '/')
            continue;
        g_string_append_c(out, *p);
    }
    while (out->len > 1 && out->str[out->len - 1] == '/')
        g_string_truncate(out, out->len - 1);
    return g_string_free(out, FALSE);
}


static gboolean
isPrefixDir(const char *parent, const char *child)
{
    size_t len = strlen(parent);

    if (strcmp(parent, "/") == 0)
        return TRUE;
    return strncmp(parent, child, len) == 0 &&
           (child[len] == '/' || child[len] == '\0');
}


gboolean
spTierPathsOverlap(const char *a, const char *b)
{
    g_autofree char *na = spTierPathNormalise(a);
    g_autofree char *nb = spTierPathNormalise(b);

    return isPrefixDir(na, nb) || isPrefixDir(nb, na);
}


static gboolean
hasDotComponent(const char *path)
{
    g_auto(GStrv) parts = g_strsplit(path, "/", -1);
    size_t i;

    for (i = 0; parts[i]; i++) {
        if (strcmp(parts[i], ".") == 0 || strcmp(parts[i], "..") == 0)
            return TRUE;
    }
    return FALSE;
}


static gboolean
validateOnePath(SpTier tier, const char *path, GError **error)
{
    if (!path || !*path) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "missing %s tier directory", spTierName(tier));
        return FALSE;
    }
    if (path[0] != '/' || hasDotComponent(path)) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "%s tier directory '%s' must be an absolute path "
                    "without '.' or '..' components",
                    spTierName(tier), path);
        return FALSE;
    }
    return TRUE;
}


gboolean
spTierLayoutValidatePaths(const char *primary, const char *secondary,
                          GError **error)
{
    if (!validateOnePath(SP_TIER_PRIMARY, primary, error) ||
        !validateOnePath(SP_TIER_SECONDARY, secondary, error))
        return FALSE;

    if (spTierPathsOverlap(primary, secondary)) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "the primary tier '%s' and the secondary tier '%s' "
                    "must be two separate directories, neither inside "
                    "the other", primary, secondary);
        return FALSE;
    }
    return TRUE;
}


static char *
resolveTierDir(SpTier tier, const char *path, GError **error)
{
    struct stat sb;
    char *real;

    if (stat(path, &sb) < 0) {
        /* The one failure an admin meets after a typo or a lost mount:
         * say what is missing and how to make it. */
        if (errno == ENOENT)
            g_set_error(error, SP_ERROR, SP_ERROR_TIER_MISSING,
                        "%s tier directory '%s' does not exist; "
                        "virsh pool-build creates it", spTierName(tier), path);
        else
            spErrorSetErrno(error, errno, "cannot access %s tier directory '%s'",
                            spTierName(tier), path);
        return NULL;
    }
    if (!S_ISDIR(sb.st_mode)) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "%s tier '%s' is not a directory",
                    spTierName(tier), path);
        return NULL;
    }
    if (!(real = realpath(path, NULL))) {
        spErrorSetErrno(error, errno, "cannot resolve %s tier directory '%s'",
                        spTierName(tier), path);
        return NULL;
    }
    return real;
}


static gboolean
checkAccess(SpTier tier, const char *path, int mode, const char *what,
            GError **error)
{
    if (access(path, mode) < 0)
        return spErrorSetErrno(error, errno, "%s tier directory '%s' is not %s",
                               spTierName(tier), path, what);
    return TRUE;
}


gboolean
spTierLayoutCheck(const char *primary, const char *secondary, GError **error)
{
    g_autofree char *real_primary = NULL;
    g_autofree char *real_secondary = NULL;

    if (!spTierLayoutValidatePaths(primary, secondary, error))
        return FALSE;
    if (!(real_primary = resolveTierDir(SP_TIER_PRIMARY, primary, error)) ||
        !(real_secondary = resolveTierDir(SP_TIER_SECONDARY, secondary, error)))
        return FALSE;

    /* Symlinks can make two distinct spellings one directory. */
    if (spTierPathsOverlap(real_primary, real_secondary)) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "the primary tier '%s' and the secondary tier '%s' "
                    "resolve to '%s' and '%s', which overlap",
                    primary, secondary, real_primary, real_secondary);
        return FALSE;
    }

    return checkAccess(SP_TIER_PRIMARY, primary, R_OK | X_OK,
                       "readable", error) &&
           checkAccess(SP_TIER_SECONDARY, secondary, R_OK | W_OK | X_OK,
                       "writable", error);
}


gboolean
spTierUsageGet(const char *dir, SpTierUsage *usage, GError **error)
{
    struct statvfs sb;

    if (statvfs(dir, &sb) < 0)
        return spErrorSetErrno(error, errno, "cannot statvfs '%s'", dir);
    usage->capacity = (guint64) sb.f_frsize * sb.f_blocks;
    usage->available = (guint64) sb.f_bavail * sb.f_frsize;
    usage->allocation = (guint64) (sb.f_blocks - sb.f_bfree) * sb.f_frsize;
    return TRUE;
}

