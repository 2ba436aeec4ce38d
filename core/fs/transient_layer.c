/*
 * transient_layer.c: the per-boot overlays of transient disks
 *
 * libvirt creates the overlay of a <transient/> disk when its guest
 * starts and deletes it when the guest stops; a layer is left behind only
 * when nobody saw the guest stop. It is the guest's own and throw-away,
 * so the pool removes it once no QEMU holds it.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/image_lock.h"
#include "fs/transient_layer.h"

gboolean
spTransientLayerName(const char *name)
{
    const char *mark = strstr(name, SP_TRANSIENT_LAYER_MARK);

    /* a volume name before the mark, a domain name after it */
    return mark && mark != name && name[0] != '.' &&
           mark[strlen(SP_TRANSIENT_LAYER_MARK)] != '\0';
}


static gboolean
isOld(const struct stat *st, gint64 now)
{
    gint64 changed = MAX((gint64) st->st_mtime, (gint64) st->st_ctime);

    return now - changed > SP_TRANSIENT_LAYER_GRACE_SECONDS;
}


/* Holding QEMU's lock bytes exclusively keeps any QEMU from opening the
 * layer while it goes; and the name must still be the file locked: a
 * start of the same guest replaces the layer with a new file. */
static gboolean
removeIfStale(int dirfd, const char *dir, const char *name, gint64 now)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autoptr(GError) err = NULL;
    struct stat before;
    struct stat locked;
    int fd;

    if (fstatat(dirfd, name, &before, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISREG(before.st_mode) || !isOld(&before, now))
        return FALSE;
    if ((fd = spImageLockExclusive(path, &err)) < 0)
        return FALSE;           /* held by a QEMU, or gone meanwhile */
    if (fstat(fd, &locked) < 0 || fstatat(dirfd, name, &before, AT_SYMLINK_NOFOLLOW) < 0 ||
        locked.st_ino != before.st_ino || locked.st_dev != before.st_dev ||
        !isOld(&locked, now)) {
        close(fd);
        return FALSE;
    }
    if (unlinkat(dirfd, name, 0) < 0) {
        g_warning("cannot remove the stale overlay '%s': %s", path, g_strerror(errno));
        close(fd);
        return FALSE;
    }
    close(fd);
    g_warning("removed '%s', the overlay of a transient disk that no QEMU holds "
              "(its guest stopped without libvirt seeing it)", path);
    return TRUE;
}


guint
spTransientLayersRemoveStale(const char *dir, gint64 now)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *name;
    guint removed = 0;

    while (d && dirfd >= 0 && (name = g_dir_read_name(d))) {
        if (spTransientLayerName(name) && removeIfStale(dirfd, dir, name, now))
            removed++;
    }
    if (dirfd >= 0)
        close(dirfd);
    return removed;
}
