/*
 * hot_set.c: the byte ranges of a template that its boots read
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/atomic_file.h"
#include "util/full_io.h"
#include "stormpool/error.h"
#include "image/hot_set.h"
#include "image/image_header.h"

struct _SpHotSet {
    guint64 virtual_size;
    GArray *ranges;             /* SpRange, sorted, disjoint, non-adjacent */
};


SpHotSet *
spHotSetNew(guint64 virtual_size)
{
    SpHotSet *set = g_new0(SpHotSet, 1);

    set->virtual_size = virtual_size;
    set->ranges = g_array_new(FALSE, FALSE, sizeof(SpRange));
    return set;
}


void
spHotSetFree(SpHotSet *set)
{
    if (!set)
        return;
    g_array_unref(set->ranges);
    g_free(set);
}


guint64
spHotSetVirtualSize(const SpHotSet *set)
{
    return set->virtual_size;
}


static gint
compareRanges(gconstpointer a, gconstpointer b)
{
    const SpRange *x = a;
    const SpRange *y = b;

    return x->offset < y->offset ? -1 : x->offset > y->offset;
}


/* Sort and merge overlapping or touching ranges, in place. */
static void
normalize(SpHotSet *set)
{
    GArray *r = set->ranges;
    guint out = 0;
    guint i;

    g_array_sort(r, compareRanges);
    for (i = 0; i < r->len; i++) {
        SpRange cur = g_array_index(r, SpRange, i);
        SpRange *last = out ? &g_array_index(r, SpRange, out - 1) : NULL;

        if (last && cur.offset <= last->offset + last->length) {
            last->length = MAX(last->offset + last->length, cur.offset + cur.length) -
                           last->offset;
            continue;
        }
        g_array_index(r, SpRange, out++) = cur;
    }
    g_array_set_size(r, out);
}


static gboolean
append(SpHotSet *set, guint64 offset, guint64 length, GError **error)
{
    SpRange range = { offset, length };

    if (length == 0 || offset >= set->virtual_size ||
        length > set->virtual_size - offset) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "range %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                    " is empty or past the end of a %" G_GUINT64_FORMAT "-byte disk",
                    offset, length, set->virtual_size);
        return FALSE;
    }
    g_array_append_val(set->ranges, range);
    return TRUE;
}


gboolean
spHotSetAdd(SpHotSet *set, guint64 offset, guint64 length, GError **error)
{
    if (!append(set, offset, length, error))
        return FALSE;
    normalize(set);
    return TRUE;
}


void
spHotSetAlign(SpHotSet *set, guint64 granularity)
{
    guint i;

    g_return_if_fail(granularity && (granularity & (granularity - 1)) == 0);
    for (i = 0; i < set->ranges->len; i++) {
        SpRange *r = &g_array_index(set->ranges, SpRange, i);
        guint64 start = r->offset & ~(granularity - 1);
        guint64 end = r->offset + r->length;

        end = MIN((end + granularity - 1) & ~(granularity - 1), set->virtual_size);
        r->offset = start;
        r->length = end - start;
    }
    normalize(set);
}


const SpRange *
spHotSetRanges(const SpHotSet *set, guint *count)
{
    *count = set->ranges->len;
    return (const SpRange *) set->ranges->data;
}


guint64
spHotSetBytes(const SpHotSet *set)
{
    guint64 total = 0;
    guint i;

    for (i = 0; i < set->ranges->len; i++)
        total += g_array_index(set->ranges, SpRange, i).length;
    return total;
}


SpHotSet *
spHotSetIntersect(const SpHotSet *a, const SpHotSet *b)
{
    SpHotSet *out = spHotSetNew(a->virtual_size);
    guint i = 0;
    guint j = 0;

    while (i < a->ranges->len && j < b->ranges->len) {
        const SpRange *x = &g_array_index(a->ranges, SpRange, i);
        const SpRange *y = &g_array_index(b->ranges, SpRange, j);
        guint64 lo = MAX(x->offset, y->offset);
        guint64 hi = MIN(x->offset + x->length, y->offset + y->length);

        if (lo < hi)
            append(out, lo, hi - lo, NULL);
        if (x->offset + x->length < y->offset + y->length)
            i++;
        else
            j++;
    }
    normalize(out);
    return out;
}


static gboolean
parseNumber(const char *word, guint64 *value)
{
    return word && g_ascii_isdigit(word[0]) &&
           g_ascii_string_to_unsigned(word, 10, 0, G_MAXUINT64, value, NULL);
}


/* One "OFFSET LENGTH" line (already known not to be a comment). */
static gboolean
parseLine(SpHotSet *set, const char *line, guint lineno, GError **error)
{
    g_auto(GStrv) words = g_strsplit_set(line, " \t", -1);
    g_autoptr(GPtrArray) used = g_ptr_array_new();
    guint64 offset;
    guint64 length;
    g_autoptr(GError) local = NULL;
    guint i;

    for (i = 0; words[i]; i++) {
        if (*words[i])
            g_ptr_array_add(used, words[i]);
    }
    if (used->len != 2 || !parseNumber(used->pdata[0], &offset) ||
        !parseNumber(used->pdata[1], &length)) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "hot set line %u: expected 'OFFSET LENGTH' in bytes, got '%s'",
                    lineno, line);
        return FALSE;
    }
    if (!append(set, offset, length, &local)) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG, "hot set line %u: %s",
                    lineno, local->message);
        return FALSE;
    }
    return TRUE;
}


SpHotSet *
spHotSetParse(const char *text, guint64 virtual_size, GError **error)
{
    g_autoptr(SpHotSet) set = spHotSetNew(virtual_size);
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    guint i;

    for (i = 0; lines[i]; i++) {
        g_autofree char *line = g_strstrip(g_strdup(lines[i]));

        if (*line == '\0' || *line == '#')
            continue;
        if (!parseLine(set, line, i + 1, error))
            return NULL;
    }
    normalize(set);
    return g_steal_pointer(&set);
}


char *
spHotSetFormat(const SpHotSet *set)
{
    GString *out = g_string_new(NULL);
    guint i;

    g_string_append_printf(out, "# stormpool hot set: %u ranges, %" G_GUINT64_FORMAT
                           " bytes of a %" G_GUINT64_FORMAT "-byte disk\n",
                           set->ranges->len, spHotSetBytes(set), set->virtual_size);
    for (i = 0; i < set->ranges->len; i++) {
        const SpRange *r = &g_array_index(set->ranges, SpRange, i);

        g_string_append_printf(out, "%" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT "\n",
                               r->offset, r->length);
    }
    return g_string_free(out, FALSE);
}


gboolean
spHotSetSave(const SpHotSet *set, const char *path, GError **error)
{
    g_autofree char *text = spHotSetFormat(set);
    g_autoptr(SpAtomicFile) file = spAtomicFileBegin(path, 0644, error);

    if (!file)
        return FALSE;
    if (!spFullWrite(spAtomicFileFd(file), text, strlen(text), error,
                     "cannot write hot set '%s'", path))
        return FALSE;
    return spAtomicFileCommit(file, TRUE, error);
}


SpHotSet *
spHotSetLoad(const char *path, guint64 virtual_size, GError **error)
{
    g_autofree char *text = NULL;
    g_autoptr(GError) local = NULL;
    SpHotSet *set;

    if (!g_file_get_contents(path, &text, NULL, &local)) {
        g_set_error(error, SP_ERROR,
                    g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT) ?
                    SP_ERROR_NOT_FOUND : SP_ERROR_IO,
                    "cannot read hot set: %s", local->message);
        return NULL;
    }
    set = spHotSetParse(text, virtual_size, &local);
    if (!set)
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG, "%s: %s", path, local->message);
    return set;
}


/* --- learning from a copy-on-read overlay ------------------------------ */

#define L1_ENTRY_OFFSET_MASK 0x00fffffffffffe00ULL
#define L2_ENTRY_COMPRESSED (1ULL << 62)
#define L2_ENTRY_ZERO 1ULL

static gboolean
readExact(int fd, void *buf, size_t len, guint64 offset, const char *path, GError **error)
{
    gssize n = spFullPread(fd, buf, len, offset, error, "cannot read '%s'", path);

    if (n < 0)
        return FALSE;
    if ((size_t) n != len) {
        g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                    "'%s' ends inside its own qcow2 tables", path);
        return FALSE;
    }
    return TRUE;
}


static gboolean
badImage(GError **error, const char *path, const char *what)
{
    g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE, "'%s' is not a usable qcow2 overlay: %s",
                path, what);
    return FALSE;
}


/* An L2 entry names a cluster holding guest data: an offset of its own or
 * compressed data, and not the "reads as zeros" flag. */
static gboolean
l2HasData(guint64 entry)
{
    if (entry & L2_ENTRY_COMPRESSED)
        return TRUE;
    return (entry & L1_ENTRY_OFFSET_MASK) != 0 && !(entry & L2_ENTRY_ZERO);
}


/* An L2 entry the image answers itself: data, or the "reads as zeros"
 * flag, which also hides what lies below. */
static gboolean
l2Answers(guint64 entry)
{
    return l2HasData(entry) || (entry & L2_ENTRY_ZERO);
}


/* Add the clusters one L2 table maps that @wanted accepts, @first_cluster
 * being the guest cluster of its first entry. */
static gboolean
addL2Table(SpHotSet *set, int fd, guint64 l2_offset, guint64 first_cluster,
           const SpImageInfo *info, gboolean (*wanted)(guint64 entry), const char *path,
           GError **error)
{
    guint64 entries = info->cluster_size / 8;
    g_autofree guint64 *l2 = g_new(guint64, entries);
    guint64 i;

    if (l2_offset % info->cluster_size || info->file_size < info->cluster_size ||
        l2_offset > info->file_size - info->cluster_size)
        return badImage(error, path, "an L2 table lies outside the file or off a cluster");
    if (!readExact(fd, l2, info->cluster_size, l2_offset, path, error))
        return FALSE;
    for (i = 0; i < entries; i++) {
        guint64 guest = (first_cluster + i) * info->cluster_size;

        if (guest >= info->virtual_size)
            break;
        if (wanted(GUINT64_FROM_BE(l2[i])))
            append(set, guest, MIN(info->cluster_size, info->virtual_size - guest), NULL);
    }
    return TRUE;
}


static gboolean
readL1(int fd, const SpImageInfo *info, const char *path, guint64 **l1, guint32 *l1_size,
       GError **error)
{
    guint8 hdr[48];
    guint64 offset;
    guint64 needed = (info->virtual_size + info->cluster_size - 1) / info->cluster_size;

    needed = (needed + info->cluster_size / 8 - 1) / (info->cluster_size / 8);
    if (!readExact(fd, hdr, sizeof(hdr), 0, path, error))
        return FALSE;
    memcpy(l1_size, hdr + 36, sizeof(*l1_size));
    memcpy(&offset, hdr + 40, sizeof(offset));
    *l1_size = GUINT32_FROM_BE(*l1_size);
    offset = GUINT64_FROM_BE(offset);
    if (*l1_size < needed || *l1_size > info->file_size / 8 ||
        offset > info->file_size - (guint64) *l1_size * 8)
        return badImage(error, path, "its L1 table does not fit the file or the disk");
    *l1 = g_new(guint64, MAX(*l1_size, 1));
    return readExact(fd, *l1, (size_t) *l1_size * 8, offset, path, error);
}


static gboolean
checkOverlayInfo(const SpImageInfo *info, const char *path, GError **error)
{
    if (info->format != SP_IMAGE_FORMAT_QCOW2)
        return badImage(error, path, "it is not a qcow2 image");
    if (info->extended_l2 || info->external_data_file) {
        g_set_error(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                    "cannot learn a hot set from '%s': extended L2 entries and external "
                    "data files are not supported", path);
        return FALSE;
    }
    return TRUE;
}


static SpHotSet *
overlayClusters(const char *path, gboolean (*wanted)(guint64 entry), GError **error)
{
    g_auto(SpImageInfo) info = { 0 };
    g_autoptr(SpHotSet) set = NULL;
    g_autofree guint64 *l1 = NULL;
    guint32 l1_size = 0;
    guint64 per_l2;
    guint32 i;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0) {
        spErrorSetErrno(error, errno, "cannot open '%s'", path);
        return NULL;
    }
    if (!spImageInfoReadFd(fd, &info, error) || !checkOverlayInfo(&info, path, error) ||
        !readL1(fd, &info, path, &l1, &l1_size, error)) {
        close(fd);
        return NULL;
    }
    set = spHotSetNew(info.virtual_size);
    per_l2 = info.cluster_size / 8;
    for (i = 0; i < l1_size && (guint64) i * per_l2 * info.cluster_size < info.virtual_size; i++) {
        guint64 l2_offset = GUINT64_FROM_BE(l1[i]) & L1_ENTRY_OFFSET_MASK;

        if (l2_offset &&
            !addL2Table(set, fd, l2_offset, i * per_l2, &info, wanted, path, error)) {
            close(fd);
            return NULL;
        }
    }
    close(fd);
    normalize(set);
    return g_steal_pointer(&set);
}


/* Copy-on-read of a hole of the template leaves a "reads as zeros"
 * cluster: it belongs to the hot set too, so that the hot replica answers
 * that read and QEMU never needs the template's L2 table for it. */
SpHotSet *
spHotSetFromOverlay(const char *path, GError **error)
{
    return overlayClusters(path, l2Answers, error);
}


/* The data extents of a raw file, below its size. */
static SpHotSet *
rawData(const char *path, GError **error)
{
    g_autoptr(SpHotSet) set = NULL;
    struct stat sb;
    off_t pos = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &sb) < 0) {
        spErrorSetErrno(error, errno, "cannot open '%s'", path);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    set = spHotSetNew(sb.st_size);
    while (pos < sb.st_size) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        off_t hole = data < 0 ? -1 : lseek(fd, data, SEEK_HOLE);

        if (data < 0 || hole <= data)
            break;              /* ENXIO: no data after pos */
        append(set, data, hole - data, NULL);
        pos = hole;
    }
    close(fd);
    normalize(set);
    return g_steal_pointer(&set);
}


SpHotSet *
spHotSetImageData(const char *path, const char *format, GError **error)
{
    if (g_strcmp0(format, "raw") == 0)
        return rawData(path, error);
    return overlayClusters(path, l2HasData, error);
}
