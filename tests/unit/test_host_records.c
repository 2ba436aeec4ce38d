/*
 * test_host_records.c: the records hosts sharing a primary tier publish
 * there (core/fs/host_records.c): their text, their files, the lock
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <unistd.h>

#include "fs/host_records.h"
#include "stormpool/error.h"
#include "test_helpers.h"

#define RECORD_TEXT \
    "stormpool-host-record 1\n" \
    "host lab-a\n" \
    "machine 5f0c6b1e9b0a4c1d8e2f3a4b5c6d7e8f\n" \
    "tier /srv/ssd/lab\n" \
    "template 1 Windows 10.qcow2\n" \
    "template 3 win10.qcow2\n"


static SpHostRecord *
sampleRecord(void)
{
    SpHostRecord *record = spHostRecordNew("lab-a", "5f0c6b1e9b0a4c1d8e2f3a4b5c6d7e8f",
                                           "/srv/ssd/lab");

    spHostRecordAdd(record, "win10.qcow2", 2);
    spHostRecordAdd(record, "Windows 10.qcow2", 1);
    spHostRecordAdd(record, "win10.qcow2", 1);
    return record;
}


/* Counts add up, templates are sorted, a name may hold spaces; the text
 * parses back to the same record. */
static void
testFormatAndParse(void)
{
    g_autoptr(SpHostRecord) record = sampleRecord();
    g_autoptr(SpHostRecord) back = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *text = spHostRecordFormat(record);
    g_autofree char *again = NULL;

    g_assert_cmpstr(text, ==, RECORD_TEXT);
    back = spHostRecordParse(text, strlen(text), &err);
    g_assert_no_error(err);
    g_assert_cmpstr(back->host, ==, "lab-a");
    g_assert_cmpuint(spHostRecordCount(back, "win10.qcow2"), ==, 3);
    g_assert_cmpuint(spHostRecordCount(back, "Windows 10.qcow2"), ==, 1);
    g_assert_cmpuint(spHostRecordCount(back, "other.qcow2"), ==, 0);
    again = spHostRecordFormat(back);
    g_assert_cmpstr(again, ==, text);
}


/* Of a template's dependents, those that reach it only through replicas
 * or kept versions are counted on a "versioned" line after its own; a
 * record without such lines (written before versions) has none. */
static void
testVersioned(void)
{
    g_autoptr(SpHostRecord) record = sampleRecord();
    g_autoptr(SpHostRecord) back = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *text = NULL;
    g_autofree char *old = NULL;

    spHostRecordAddVersioned(record, "win10.qcow2", 2);
    text = spHostRecordFormat(record);
    g_assert_nonnull(strstr(text, "template 3 win10.qcow2\nversioned 2 win10.qcow2\n"));
    back = spHostRecordParse(text, strlen(text), &err);
    g_assert_no_error(err);
    g_assert_cmpuint(spHostRecordVersioned(back, "win10.qcow2"), ==, 2);
    g_assert_cmpuint(spHostRecordVersioned(back, "Windows 10.qcow2"), ==, 0);
    g_clear_pointer(&back, spHostRecordFree);
    old = g_strdup(RECORD_TEXT);
    back = spHostRecordParse(old, strlen(old), &err);
    g_assert_no_error(err);
    g_assert_cmpuint(spHostRecordVersioned(back, "win10.qcow2"), ==, 0);
}


/* Another host wrote it: every malformed record is refused, saying where. */
static void
testParseRejects(void)
{
    static const struct { const char *text; const char *message; } cases[] = {
        { "", "line 0: not a complete text file" },
        { "stormpool-host-record 1\nhost a\nmachine 00", "line 0: not a complete text file" },
        { "stormpool-host-record 2\n", "line 1: not a host record" },
        { "stormpool-host-record 1\n",
          "line 1: the record ends before its host, machine and tier" },
        { "stormpool-host-record 1\nhost .a\nmachine \n", "line 2: expected 'host NAME'" },
        { "stormpool-host-record 1\nhost a/b\nmachine \n", "line 2: expected 'host NAME'" },
        { "stormpool-host-record 1\nhost a\nmachine xyz\n", "line 3: expected 'machine ID'" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier /t\ntemplate 0 t\n",
          "line 5: expected 'template COUNT NAME', COUNT above 0" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier /t\ntemplate 4294967296 t\n",
          "line 5: expected 'template COUNT NAME', COUNT above 0" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier /t\ntemplate 1 .hidden\n",
          "line 5: invalid template name" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier /t\ntemplate 1 a/b\n",
          "line 5: invalid template name" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier /t\ntemplate 1 t\ntemplate 2 t\n",
          "line 6: template listed twice" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier t\n", "line 4: expected 'tier PATH'" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier /a\tb\n",
          "line 4: expected 'tier PATH'" },
        { "stormpool-host-record 1\nhost a\nmachine \n",
          "line 3: the record ends before its host, machine and tier" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier /t\n\n",
          "line 5: expected 'template COUNT NAME'" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier /t\nversioned 1 t\n",
          "line 5: versioned count of a template not listed before" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier /t\ntemplate 1 t\nversioned 2 t\n",
          "line 6: versioned count above the template's" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier /t\ntemplate 2 t\nversioned 1 t\n"
          "versioned 1 t\n", "line 7: versioned count listed twice" },
        { "stormpool-host-record 1\nhost a\nmachine \ntier /t\ntemplate 1 t\nversioned 0 t\n",
          "line 6: expected 'versioned COUNT NAME', COUNT above 0" },
    };
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GError) err = NULL;
        g_autofree char *want = g_strdup_printf("malformed host record, %s", cases[i].message);

        g_assert_null(spHostRecordParse(cases[i].text, strlen(cases[i].text), &err));
        g_assert_error(err, SP_ERROR, SP_ERROR_BAD_IMAGE);
        g_assert_cmpstr(err->message, ==, want);
    }
}


static void
testParseRejectsNul(void)
{
    static const char text[] = "stormpool-host-record 1\nhost a\0b\nmachine \n";
    g_autoptr(GError) err = NULL;

    g_assert_null(spHostRecordParse(text, sizeof(text) - 1, &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_BAD_IMAGE);
}


static void
testHostNames(void)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *long_name = g_strnfill(SP_HOST_NAME_MAX + 1, 'a');

    g_assert_true(spHostNameValidate("lab-a.example_1", NULL));
    g_assert_false(spHostNameValidate("", NULL));
    g_assert_false(spHostNameValidate(".lock", NULL));
    g_assert_false(spHostNameValidate("a b", NULL));
    g_assert_false(spHostNameValidate(long_name, &err));
    g_assert_cmpstr(err->message, ==, "invalid host name '" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa': 1 to 64 letters, digits, '.', '-' "
                    "or '_', not starting with '.'");
}


/* A record's file is named after its host and a hash of its tier: two
 * pools of one host on one store have a record each. */
static void
testIds(void)
{
    g_autofree char *a = spHostRecordId("lab-a", "/srv/ssd/lab");
    g_autofree char *b = spHostRecordId("lab-a", "/srv/ssd/lab2");

    g_assert_cmpstr(a, ==, "lab-a.5650a7ef");
    g_assert_cmpstr(b, ==, "lab-a.b060bb51");
}


/* Written and read back whole; the lock and a temporary file are no
 * hosts; a record under another host's name is refused. */
static void
testFiles(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autoptr(SpHostRecord) record = sampleRecord();
    g_autoptr(SpHostRecord) read = NULL;
    g_autoptr(SpHostRecord) other = spHostRecordNew("lab-a", "", "/srv/ssd/lab2");
    g_autoptr(GPtrArray) hosts = NULL;
    g_autoptr(GError) err = NULL;
    g_autofree char *text = NULL;
    g_autofree char *path = g_build_filename(dir, SP_HOSTS_DIR, "lab-a.5650a7ef", NULL);
    g_autofree char *stray = g_build_filename(dir, SP_HOSTS_DIR, ".stormpool-tmp-x", NULL);
    g_autofree char *fake = g_build_filename(dir, SP_HOSTS_DIR, "lab-c.5650a7ef", NULL);
    int lock;

    hosts = spHostRecordList(dir, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(hosts->len, ==, 0);
    g_clear_pointer(&hosts, g_ptr_array_unref);
    g_assert_true(spHostRecordWrite(dir, record, &err));
    g_assert_true(spHostRecordWrite(dir, other, &err));
    g_assert_no_error(err);
    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, RECORD_TEXT);
    g_assert_cmpint(lock = spHostsLock(dir, FALSE, 0, &err), >=, 0);
    close(lock);
    g_assert_true(g_file_set_contents(stray, "x", 1, NULL));
    g_assert_true(g_file_set_contents(fake, RECORD_TEXT, -1, NULL));
    hosts = spHostRecordList(dir, &err);
    g_assert_cmpuint(hosts->len, ==, 3);
    g_assert_cmpstr(g_ptr_array_index(hosts, 0), ==, "lab-a.5650a7ef");
    g_assert_cmpstr(g_ptr_array_index(hosts, 1), ==, "lab-a.b060bb51");
    g_assert_cmpstr(g_ptr_array_index(hosts, 2), ==, "lab-c.5650a7ef");
    read = spHostRecordRead(dir, "lab-a.5650a7ef", &err);
    g_assert_no_error(err);
    g_assert_cmpuint(spHostRecordCount(read, "win10.qcow2"), ==, 3);
    g_assert_null(spHostRecordRead(dir, "lab-c.5650a7ef", &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_BAD_IMAGE);
    g_assert_true(g_str_has_suffix(err->message, "lab-c.5650a7ef: the record is that of "
                                   "host 'lab-a' and tier '/srv/ssd/lab'"));
    g_clear_error(&err);
    g_assert_null(spHostRecordRead(dir, "lab-d", &err));
    g_assert_error(err, SP_ERROR, SP_ERROR_NOT_FOUND);
    spTestTempDirFree(g_steal_pointer(&dir));
}


/* Shared locks go together; an exclusive one waits for them, and gives
 * up after its timeout with a sentence saying why. */
static void
testLock(void)
{
    g_autofree char *dir = spTestTempDir();
    g_autoptr(GError) err = NULL;
    g_autofree char *want = NULL;
    int a, b, c;

    g_assert_cmpint(a = spHostsLock(dir, FALSE, 0, &err), >=, 0);
    g_assert_cmpint(b = spHostsLock(dir, FALSE, 0, &err), >=, 0);
    g_assert_cmpint(spHostsLock(dir, TRUE, 50, &err), ==, -1);
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    want = g_strdup_printf("another host has held the lock of the template store '%s' "
                           "for 50 ms; try again", dir);
    g_assert_cmpstr(err->message, ==, want);
    g_clear_error(&err);
    close(a);
    close(b);
    g_assert_cmpint(c = spHostsLock(dir, TRUE, 0, &err), >=, 0);
    g_assert_cmpint(spHostsLock(dir, FALSE, 0, &err), ==, -1);
    g_assert_error(err, SP_ERROR, SP_ERROR_IN_USE);
    close(c);
    g_assert_true(spHostsRemoveDir(dir, "lab-a.5650a7ef", NULL));
    spTestTempDirFree(g_steal_pointer(&dir));
}


int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/host-records/format-and-parse", testFormatAndParse);
    g_test_add_func("/host-records/parse-rejects", testParseRejects);
    g_test_add_func("/host-records/versioned", testVersioned);
    g_test_add_func("/host-records/parse-rejects-nul", testParseRejectsNul);
    g_test_add_func("/host-records/host-names", testHostNames);
    g_test_add_func("/host-records/ids", testIds);
    g_test_add_func("/host-records/files", testFiles);
    g_test_add_func("/host-records/lock", testLock);
    return g_test_run();
}
