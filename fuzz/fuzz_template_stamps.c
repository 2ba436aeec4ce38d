/*
 * fuzz_template_stamps.c: libFuzzer target of the template stamps loader
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The input is a stamps file (.stormpool-template-stamps in the secondary
 * tier). spTemplateStampsLoad() only takes a path; it reads the input from
 * a memfd through /proc/self/fd/N. What loads must save and load back
 * to the same stamps.
 */

#include <string.h>

#include "fuzz_common.h"
#include "replica/template_stamps.h"

static int stampsFd = -1;
static char *stampsPath;
static char *savedPath;


int
LLVMFuzzerInitialize(int *argc G_GNUC_UNUSED, char ***argv G_GNUC_UNUSED)
{
    fuzzSetup();
    stampsFd = fuzzMemfd("stamps");
    stampsPath = g_strdup_printf("/proc/self/fd/%d", stampsFd);
    savedPath = g_build_filename(fuzzDir(), SP_TEMPLATE_STAMPS_FILE, NULL);
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GHashTable) loaded = NULL;
    g_autoptr(GHashTable) again = NULL;
    g_autoptr(GError) error = NULL;
    GHashTableIter iter;
    gpointer key, value;

    fuzzFill(stampsFd, data, size);
    loaded = spTemplateStampsLoad(stampsPath, &error);
    g_assert_no_error(error);
    g_assert_nonnull(loaded);

    g_hash_table_iter_init(&iter, loaded);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        const SpTemplateStamp *stamp = value;

        g_assert_true(*(const char *) key);
        g_assert_null(strchr(key, '/'));
        g_assert_cmpint(stamp->size, >=, 0);
        g_assert_cmpint(stamp->mtime_nsec, >=, 0);
        g_assert_cmpint(stamp->mtime_nsec, <=, 999999999);
    }

    if (!spTemplateStampsSave(savedPath, loaded, &error))
        g_error("%s", error->message);
    again = spTemplateStampsLoad(savedPath, &error);
    g_assert_no_error(error);
    g_assert_true(spTemplateStampsEqual(loaded, again));
    return 0;
}
