/*
 * fuzz_host_record.c: libFuzzer target of the host record parser
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The input is a record another host wrote into the shared primary tier
 * (.stormpool-hosts/HOST). What parses must format and parse back to the
 * same text: the record a host reads is the record it would write.
 */

#include <string.h>

#include "fuzz_common.h"
#include "fs/host_records.h"

int
LLVMFuzzerInitialize(int *argc G_GNUC_UNUSED, char ***argv G_GNUC_UNUSED)
{
    fuzzSetup();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(SpHostRecord) record = NULL;
    g_autoptr(SpHostRecord) again = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *text = NULL;
    g_autofree char *text_again = NULL;

    if (!(record = spHostRecordParse((const char *) data, size, &error))) {
        g_assert_nonnull(error);
        return 0;
    }
    g_assert_no_error(error);
    text = spHostRecordFormat(record);
    again = spHostRecordParse(text, strlen(text), &error);
    g_assert_no_error(error);
    text_again = spHostRecordFormat(again);
    g_assert_cmpstr(text, ==, text_again);
    return 0;
}
