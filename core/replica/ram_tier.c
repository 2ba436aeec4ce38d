/*
 * ram_tier.c: replicas in a RAM-backed directory, under a size cap
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "util/size_format.h"
#include "replica/ram_tier.h"
#include "replica/template_replica.h"


SpRamReplica *
spRamReplicaNew(const char *path, guint64 allocation, guint dependents, gint64 last_used)
{
    SpRamReplica *replica = g_new0(SpRamReplica, 1);

    replica->path = g_strdup(path);
    replica->allocation = allocation;
    replica->dependents = dependents;
    replica->last_used = last_used;
    return replica;
}


void
spRamReplicaFree(SpRamReplica *replica)
{
    if (!replica)
        return;
    g_free(replica->path);
    g_free(replica);
}


static guint64
unitFactor(const char *suffix)
{
    static const char *const units = "KMGT";
    const char *unit;

    if (*suffix == '\0' || g_ascii_strcasecmp(suffix, "B") == 0)
        return 1;
    unit = strchr(units, g_ascii_toupper(*suffix));
    if (!unit || !*unit)
        return 0;
    if (suffix[1] && g_ascii_strcasecmp(suffix + 1, "iB") != 0 &&
        g_ascii_strcasecmp(suffix + 1, "B") != 0)
        return 0;
    return 1ULL << (10 * (unit - units + 1));
}


gboolean
spRamTierParseCap(const char *text, guint64 *cap, GError **error)
{
    guint64 number = 0;
    guint64 factor = 0;
    char *end = NULL;

    if (text && g_ascii_isdigit(*text)) {
        errno = 0;
        number = g_ascii_strtoull(text, &end, 10);
        factor = errno ? 0 : unitFactor(end);
    }
    if (!factor || number == 0 || number > G_MAXUINT64 / factor) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "invalid RAM tier size '%s': expected a positive size such as "
                    "'2G' or '512M'", text ? text : "");
        return FALSE;
    }
    *cap = number * factor;
    return TRUE;
}


static gboolean
sumDir(int dirfd, const char *path, guint64 *used, GError **error)
{
    DIR *dir = fdopendir(dirfd);
    struct dirent *ent;
    gboolean ok = TRUE;

    if (!dir) {
        int saved = errno;

        close(dirfd);
        return spErrorSetErrno(error, saved, "cannot read '%s'", path);
    }
    while (ok && (ent = readdir(dir))) {
        struct stat sb;

        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        if (fstatat(dirfd, ent->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            continue;           /* removed meanwhile */
        if (S_ISREG(sb.st_mode)) {
            *used += (guint64) sb.st_blocks * 512;
        } else if (S_ISDIR(sb.st_mode)) {
            g_autofree char *sub = g_build_filename(path, ent->d_name, NULL);
            int fd = openat(dirfd, ent->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

            ok = fd >= 0 ? sumDir(fd, sub, used, error) : TRUE;
        }
    }
    closedir(dir);
    return ok;
}


gboolean
spRamTierUsage(const char *dir, guint64 *used, GError **error)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    *used = 0;
    if (fd < 0) {
        if (errno == ENOENT)
            return TRUE;        /* an empty tier after a reboot */
        return spErrorSetErrno(error, errno, "cannot open RAM tier '%s'", dir);
    }
    return sumDir(fd, dir, used, error);
}


static gint
olderFirst(gconstpointer a, gconstpointer b)
{
    const SpRamReplica *x = *(SpRamReplica * const *) a;
    const SpRamReplica *y = *(SpRamReplica * const *) b;

    return x->last_used < y->last_used ? -1 : x->last_used > y->last_used;
}


static void
setNoRoom(GError **error, const char *dir, guint64 cap, guint64 used, guint64 need,
          guint64 evictable)
{
    g_autofree char *cap_s = spFormatSize(cap);
    g_autofree char *used_s = spFormatSize(used);
    g_autofree char *need_s = spFormatSize(need);
    g_autofree char *free_s = spFormatSize(evictable);

    g_set_error(error, SP_ERROR, SP_ERROR_NO_SPACE,
                "RAM tier '%s' is capped at %s: %s are in use and a replica needs %s more; "
                "evicting every replica no instance uses would free only %s",
                dir, cap_s, used_s, need_s, free_s);
}


GPtrArray *
spRamTierPlanRoom(const char *dir, guint64 cap, guint64 used, guint64 need,
                  GPtrArray *replicas, GError **error)
{
    g_autoptr(GPtrArray) unused = g_ptr_array_new();
    g_autoptr(GPtrArray) chosen = g_ptr_array_new();
    guint64 evictable = 0;
    guint i;

    for (i = 0; i < replicas->len; i++) {
        SpRamReplica *r = replicas->pdata[i];

        if (r->dependents == 0) {
            g_ptr_array_add(unused, r);
            evictable += r->allocation;
        }
    }
    if (need > cap || used - MIN(used, evictable) > cap - need) {
        setNoRoom(error, dir, cap, used, need, evictable);
        return NULL;
    }
    g_ptr_array_sort(unused, olderFirst);
    for (i = 0; i < unused->len && used > cap - need; i++) {
        SpRamReplica *r = unused->pdata[i];

        g_ptr_array_add(chosen, r);
        used -= MIN(used, r->allocation);
    }
    return g_steal_pointer(&chosen);
}


gboolean
spRamTierMakeRoom(const char *dir, guint64 cap, guint64 need, GPtrArray *replicas,
                  GPtrArray *evicted, GError **error)
{
    g_autoptr(GPtrArray) victims = NULL;
    guint64 used;
    guint i;

    if (!spRamTierUsage(dir, &used, error))
        return FALSE;
    if (!(victims = spRamTierPlanRoom(dir, cap, used, need, replicas, error)))
        return FALSE;
    for (i = 0; i < victims->len; i++) {
        SpRamReplica *r = victims->pdata[i];

        if (!spReplicaRemove(r->path, error))
            return FALSE;
        if (evicted)
            g_ptr_array_add(evicted, g_strdup(r->path));
    }
    return TRUE;
}
