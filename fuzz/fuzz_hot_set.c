/*
 * fuzz_hot_set.c: libFuzzer target of the hot set text parser
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The input is the text of a hot set file or of a boot trace, as
 * spHotSetLoad() hands it to spHotSetParse(). It is parsed against a
 * 1 TiB disk and against the largest virtual size a qcow2 header allows.
 * What parses must format and parse back to the same set, and
 * intersecting and aligning it must keep hot_set.h's promises.
 */

#include <string.h>

#include "fuzz_common.h"
#include "stormpool/error.h"

int
LLVMFuzzerInitialize(int *argc G_GNUC_UNUSED, char ***argv G_GNUC_UNUSED)
{
    fuzzSetup();
    return 0;
}


static gboolean
sameRanges(const SpHotSet *a, const SpHotSet *b)
{
    guint na, nb;
    const SpRange *ra = spHotSetRanges(a, &na);
    const SpRange *rb = spHotSetRanges(b, &nb);

    return na == nb && (na == 0 || memcmp(ra, rb, na * sizeof(*ra)) == 0);
}


static void
parseWith(const char *text, guint64 virtual_size)
{
    static const guint64 granularities[] = { 512, 65536, 2 * 1024 * 1024 };
    g_autoptr(SpHotSet) set = NULL;
    g_autoptr(SpHotSet) again = NULL;
    g_autoptr(SpHotSet) both = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *formatted = NULL;
    gsize i;

    set = spHotSetParse(text, virtual_size, &error);
    if (!set) {
        g_assert_nonnull(error);
        g_assert_true(g_error_matches(error, SP_ERROR, SP_ERROR_INVALID_ARG));
        return;
    }
    g_assert_no_error(error);
    g_assert_cmpuint(spHotSetVirtualSize(set), ==, virtual_size);
    fuzzCheckHotSet(set);

    formatted = spHotSetFormat(set);
    again = spHotSetParse(formatted, virtual_size, &error);
    g_assert_no_error(error);
    g_assert_true(sameRanges(set, again));

    both = spHotSetIntersect(set, again);
    fuzzCheckHotSet(both);
    g_assert_true(sameRanges(set, both));

    for (i = 0; i < G_N_ELEMENTS(granularities); i++) {
        guint64 before = spHotSetBytes(again);

        spHotSetAlign(again, granularities[i]);
        fuzzCheckHotSet(again);
        g_assert_cmpuint(spHotSetBytes(again), >=, before);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* g_file_get_contents() text: a C string, cut at the first NUL */
    g_autofree char *text = g_strndup((const char *) data, size);

    parseWith(text, 1ULL << 40);
    parseWith(text, G_MAXINT64);
    return 0;
}
