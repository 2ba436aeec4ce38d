/*
 * fuzz_image_header.c: libFuzzer target of the image header parser
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The input is a whole image file. spImageInfoReadFd() reads it from a
 * memfd, as pool refresh reads every file of the pool. When it is a qcow2
 * image we can walk, the same bytes go through the overlay walkers of
 * hot_set.c too (spHotSetFromOverlay, spHotSetImageData): they read the
 * L1 and L2 tables, which the header parser does not.
 */

#include <fcntl.h>
#include <string.h>

#include "fuzz_common.h"
#include "stormpool/error.h"
#include "image/image_header.h"

static int imageFd = -1;
static char *overlayPath;


int
LLVMFuzzerInitialize(int *argc G_GNUC_UNUSED, char ***argv G_GNUC_UNUSED)
{
    fuzzSetup();
    imageFd = fuzzMemfd("image");
    overlayPath = g_build_filename(fuzzDir(), "overlay.qcow2", NULL);
    return 0;
}


static void
checkInfo(const SpImageInfo *info, size_t size)
{
    g_assert_cmpuint(info->file_size, ==, size);
    g_assert_nonnull(spImageFormatName(info));

    switch (info->format) {
    case SP_IMAGE_FORMAT_RAW:
    case SP_IMAGE_FORMAT_OTHER:
        g_assert_cmpuint(info->virtual_size, ==, size);
        g_assert_true((info->format == SP_IMAGE_FORMAT_OTHER) == !!info->other_format);
        g_assert_null(info->backing_file);
        break;
    case SP_IMAGE_FORMAT_QCOW2:
        g_assert_true(info->qcow2_version == 2 || info->qcow2_version == 3);
        g_assert_cmpuint(info->cluster_bits, >=, 9);
        g_assert_cmpuint(info->cluster_bits, <=, 21);
        g_assert_cmpuint(info->cluster_size, ==, 1ULL << info->cluster_bits);
        g_assert_cmpuint(info->virtual_size, <=, G_MAXINT64);
        g_assert_true(!info->backing_file || (*info->backing_file &&
                                              strlen(info->backing_file) <= 1023));
        g_assert_true(!info->data_file || *info->data_file);
        g_assert_true(!info->backing_format || *info->backing_format);
        break;
    default:
        g_assert_not_reached();
    }
}


/* The overlay walkers take a path, which they open with O_NOFOLLOW. */
static void
walkOverlay(const uint8_t *data, size_t size)
{
    g_autoptr(SpHotSet) answers = NULL;
    g_autoptr(SpHotSet) held = NULL;
    g_autoptr(GError) error = NULL;

    if (!g_file_set_contents(overlayPath, (const char *) data, size, &error))
        g_error("%s", error->message);

    answers = spHotSetFromOverlay(overlayPath, &error);
    if (answers)
        fuzzCheckHotSet(answers);
    else
        g_assert_nonnull(error);
    g_clear_error(&error);

    held = spHotSetImageData(overlayPath, "qcow2", &error);
    if (held) {
        fuzzCheckHotSet(held);
        /* data clusters are a part of those the overlay answers */
        g_assert_nonnull(answers);
        g_assert_cmpuint(spHotSetBytes(held), <=, spHotSetBytes(answers));
    } else {
        g_assert_nonnull(error);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_auto(SpImageInfo) info = { 0 };
    g_auto(SpImageInfo) copy = { 0 };
    g_autoptr(GError) error = NULL;

    fuzzFill(imageFd, data, size);
    if (!spImageInfoReadFd(imageFd, &info, &error)) {
        static const SpImageInfo zero = { 0 };

        g_assert_nonnull(error);
        g_assert_true(error->domain == SP_ERROR);
        g_assert_nonnull(error->message);
        /* never left half set on failure */
        g_assert_true(memcmp(&info, &zero, sizeof(info)) == 0);
        return 0;
    }
    g_assert_no_error(error);
    checkInfo(&info, size);

    spImageInfoCopy(&copy, &info);
    g_assert_cmpstr(copy.backing_file, ==, info.backing_file);
    g_assert_cmpstr(copy.data_file, ==, info.data_file);

    if (info.format == SP_IMAGE_FORMAT_QCOW2)
        walkOverlay(data, size);
    return 0;
}
