/*
 * hot_replica.c: replicas that hold only a template's hot set
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/atomic_file.h"
#include "util/process.h"
#include "stormpool/error.h"
#include "replica/hot_replica.h"
#include "image/image_header.h"
#include "image/qcow2_overlay.h"
#include "replica/template_replica.h"

/* Ranges per qemu-io process: keeps its command line far below ARG_MAX. */
#define READS_PER_RUN 2048


static SpHotSet *
alignedCopy(const SpHotSet *set)
{
    g_autoptr(SpHotSet) copy = spHotSetNew(spHotSetVirtualSize(set));
    guint count;
    const SpRange *r = spHotSetRanges(set, &count);
    guint i;

    for (i = 0; i < count; i++)
        spHotSetAdd(copy, r[i].offset, r[i].length, NULL);
    spHotSetAlign(copy, SP_HOT_REPLICA_CLUSTER);
    return g_steal_pointer(&copy);
}


/* The number of L2 tables the set's clusters fall into. */
static guint64
l2Tables(const SpHotSet *set)
{
    const guint64 span = (guint64) SP_HOT_REPLICA_CLUSTER * (SP_HOT_REPLICA_CLUSTER / 8);
    guint count;
    const SpRange *r = spHotSetRanges(set, &count);
    guint64 tables = 0;
    gint64 last = -1;
    guint i;

    for (i = 0; i < count; i++) {
        gint64 first = r[i].offset / span;
        gint64 end = (r[i].offset + r[i].length - 1) / span;

        tables += end - MAX(first, last + 1) + 1;
        last = end;
    }
    return tables;
}


guint64
spHotReplicaSize(const SpHotSet *set)
{
    g_autoptr(SpHotSet) aligned = alignedCopy(set);
    const guint64 cluster = SP_HOT_REPLICA_CLUSTER;
    guint64 data = spHotSetBytes(aligned) / cluster;
    guint64 l1 = (spHotSetVirtualSize(set) / (cluster * (cluster / 8)) + 1) * 8;
    guint64 clusters = 1 + (l1 + cluster - 1) / cluster + l2Tables(aligned) + data;

    /* refcount table and blocks (16-bit entries) for all of them, plus one
     * cluster of slack for QEMU's allocation pattern */
    clusters += 2 + clusters / (cluster / 2) + 1;
    return clusters * cluster;
}


static gboolean
checkTemplate(const char *template_path, const SpHotSet *set, GError **error)
{
    g_auto(SpImageInfo) info = { 0 };

    if (!spImageInfoRead(template_path, &info, error))
        return FALSE;
    if (info.virtual_size != spHotSetVirtualSize(set)) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "the hot set was learned for a %" G_GUINT64_FORMAT "-byte disk, but "
                    "template '%s' is %" G_GUINT64_FORMAT " bytes: learn it again",
                    spHotSetVirtualSize(set), template_path, info.virtual_size);
        return FALSE;
    }
    return TRUE;
}


static gboolean
writeOverlay(int fd, const char *template_path, const char *template_format,
             guint64 virtual_size, GError **error)
{
    SpQcow2Spec spec = {
        .virtual_size = virtual_size,
        .cluster_bits = SP_QCOW2_DEFAULT_CLUSTER_BITS,
        .backing_file = template_path,
        .backing_format = template_format,
    };

    return spQcow2SpecValidate(&spec, error) && spQcow2WriteFd(fd, &spec, error);
}


/* One qemu-io run reading @count ranges from @first through @path with
 * copy-on-read: each read copies its clusters from the template into the
 * overlay. */
static gboolean
runQemuIo(const char *qemu_io, const char *path, const SpRange *first, guint count,
          GError **error)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *out = NULL;
    g_autoptr(GError) local = NULL;
    guint i;

    g_ptr_array_add(argv, g_strdup(qemu_io ? qemu_io : "qemu-io"));
    g_ptr_array_add(argv, g_strdup("-C"));
    g_ptr_array_add(argv, g_strdup("-f"));
    g_ptr_array_add(argv, g_strdup("qcow2"));
    for (i = 0; i < count; i++) {
        g_ptr_array_add(argv, g_strdup("-c"));
        g_ptr_array_add(argv, g_strdup_printf("read -q %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
                                              first[i].offset, first[i].length));
    }
    g_ptr_array_add(argv, g_strdup(path));
    g_ptr_array_add(argv, NULL);
    /* qemu-io exits non-zero when one of its commands fails; its stdout is
     * captured because it reports those failures there, not on stderr. */
    if (spProcessRun((const char * const *) argv->pdata, &out, &local))
        return TRUE;
    if (local->domain == G_SPAWN_ERROR)
        g_set_error(error, SP_ERROR, SP_ERROR_IO, "cannot run '%s' to copy a hot set: %s",
                    (char *) argv->pdata[0], local->message);
    else
        g_set_error(error, SP_ERROR, SP_ERROR_IO,
                    "copying the hot set into '%s' with qemu-io failed: %s", path,
                    local->message);
    return FALSE;
}


/* The set as reads of at most SP_HOT_REPLICA_CHUNK bytes. */
static GArray *
chunkedReads(const SpHotSet *set)
{
    GArray *reads = g_array_new(FALSE, FALSE, sizeof(SpRange));
    guint count;
    const SpRange *r = spHotSetRanges(set, &count);
    guint i;

    for (i = 0; i < count; i++) {
        guint64 off;

        for (off = r[i].offset; off < r[i].offset + r[i].length; off += SP_HOT_REPLICA_CHUNK) {
            SpRange piece = { off, MIN((guint64) SP_HOT_REPLICA_CHUNK,
                                       r[i].offset + r[i].length - off) };

            g_array_append_val(reads, piece);
        }
    }
    return reads;
}


static gboolean
fill(const char *qemu_io, const char *path, const SpHotSet *set, GError **error)
{
    g_autoptr(GArray) reads = chunkedReads(set);
    guint i;

    for (i = 0; i < reads->len; i += READS_PER_RUN) {
        if (!runQemuIo(qemu_io, path, &g_array_index(reads, SpRange, i),
                       MIN(READS_PER_RUN, reads->len - i), error))
            return FALSE;
    }
    return TRUE;
}


/* Every cluster of @set that holds data in the template is answered by
 * the overlay at @path. The template's holes in @set are not checked:
 * copy-on-read makes them "reads as zeros" clusters, and they would read
 * as zeros through the chain anyway. */
static gboolean
checkFilled(const char *path, const char *template_path, const char *template_format,
            const SpHotSet *set, GError **error)
{
    g_autoptr(SpHotSet) held = spHotSetFromOverlay(path, error);
    g_autoptr(SpHotSet) data = NULL;
    g_autoptr(SpHotSet) expected = NULL;
    g_autoptr(SpHotSet) copied = NULL;
    guint count;
    const SpRange *r;

    if (!held ||
        !(data = spHotSetImageData(template_path, template_format, error)))
        return FALSE;
    expected = spHotSetIntersect(set, data);
    copied = spHotSetIntersect(expected, held);
    if (spHotSetBytes(copied) != spHotSetBytes(expected)) {
        r = spHotSetRanges(expected, &count);
        g_set_error(error, SP_ERROR, SP_ERROR_IO,
                    "the hot replica '%s' holds %" G_GUINT64_FORMAT " of the %"
                    G_GUINT64_FORMAT " bytes of the template's hot set (%u ranges from %"
                    G_GUINT64_FORMAT "): the copy did not complete", path,
                    spHotSetBytes(copied), spHotSetBytes(expected), count,
                    count ? r[0].offset : 0);
        return FALSE;
    }
    return TRUE;
}


gboolean
spHotReplicaCreate(const char *template_path, const char *template_format,
                   const SpHotSet *set, const char *replica_path,
                   const char *qemu_io, GError **error)
{
    g_autoptr(SpHotSet) aligned = alignedCopy(set);
    g_autofree char *dir = g_path_get_dirname(replica_path);
    g_autoptr(SpAtomicFile) file = NULL;

    if (!g_path_is_absolute(template_path)) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "template path '%s' is not absolute", template_path);
        return FALSE;
    }
    if (!checkTemplate(template_path, set, error))
        return FALSE;
    if (g_mkdir_with_parents(dir, 0711) < 0)
        return spErrorSetErrno(error, errno, "cannot create '%s'", dir);
    if (!(file = spAtomicFileBegin(replica_path, SP_REPLICA_MODE, error)))
        return FALSE;
    return writeOverlay(spAtomicFileFd(file), template_path, template_format,
                        spHotSetVirtualSize(set), error) &&
           fill(qemu_io, spAtomicFileTmpPath(file), aligned, error) &&
           checkFilled(spAtomicFileTmpPath(file), template_path, template_format, aligned,
                       error) &&
           spAtomicFileCommit(file, FALSE, error);
}


gboolean
spHotReplicaEnsure(const char *template_path, const char *template_format,
                   const SpHotSet *set, const char *replica_path,
                   const char *qemu_io, gboolean *made, GError **error)
{
    struct stat sb;
    g_autoptr(GError) local = NULL;

    if (made)
        *made = FALSE;
    if (lstat(replica_path, &sb) == 0)
        return TRUE;
    if (errno != ENOENT)
        return spErrorSetErrno(error, errno, "cannot stat '%s'", replica_path);
    if (spHotReplicaCreate(template_path, template_format, set, replica_path, qemu_io,
                           &local)) {
        if (made)
            *made = TRUE;
        return TRUE;
    }
    /* made meanwhile by someone else: as good */
    if (g_error_matches(local, SP_ERROR, SP_ERROR_EXISTS))
        return TRUE;
    g_propagate_error(error, g_steal_pointer(&local));
    return FALSE;
}
