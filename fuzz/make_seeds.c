/*
 * make_seeds.c: write the seeds of the hot set and template stamps targets
 *               with the core's own writers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   make_seeds DIR     writes DIR/hot_set/... and DIR/template_stamps/...
 *
 * Built with the targets (-Dfuzzing=true); its output was copied into
 * fuzz/corpus. Run it again when a writer's format changes.
 */

#include <glib/gstdio.h>
#include <stdlib.h>

#include "image/hot_set.h"
#include "replica/template_stamps.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

static void
saveHotSet(const char *dir, const char *name, guint64 vsize,
           const guint64 (*ranges)[2], gsize n, guint64 align)
{
    g_autoptr(SpHotSet) set = spHotSetNew(vsize);
    g_autofree char *path = g_build_filename(dir, "hot_set", name, NULL);
    g_autoptr(GError) error = NULL;
    gsize i;

    for (i = 0; i < n; i++) {
        if (!spHotSetAdd(set, ranges[i][0], ranges[i][1], &error))
            g_error("%s: %s", name, error->message);
    }
    if (align)
        spHotSetAlign(set, align);
    if (!spHotSetSave(set, path, &error))
        g_error("%s", error->message);
}


static void
saveStamps(const char *dir, const char *name, const char * const *names,
           const SpTemplateStamp *stamps, gsize n)
{
    g_autoptr(GHashTable) table = spTemplateStampsNew();
    g_autofree char *path = g_build_filename(dir, "template_stamps", name, NULL);
    g_autoptr(GError) error = NULL;
    gsize i;

    for (i = 0; i < n; i++)
        spTemplateStampsSet(table, names[i], &stamps[i]);
    if (!spTemplateStampsSave(path, table, &error))
        g_error("%s", error->message);
}


int
main(int argc, char **argv)
{
    static const guint64 boot[][2] = {
        { 0, 512 }, { 1 * MiB, 64 * KiB }, { 1 * MiB + 32 * KiB, 64 * KiB },
        { 200 * MiB, 4 * KiB }, { 20 * GiB - 4 * KiB, 4 * KiB },
    };
    static const guint64 one[][2] = { { 0, 1 } };
    static const guint64 big[][2] = {
        { 0, 8 * GiB }, { 8 * GiB + 1, 1 }, { G_MAXINT64 - 4096, 4095 },
    };
    static const char * const names[] = {
        "win10.qcow2", " leading space", "new\nline\tand \"quotes\" and \\",
        "\xc3\xbcmlaut.img", "debian12.raw",
    };
    static const SpTemplateStamp stamps[] = {
        { 12, 21474836480, 1700000000, 123456789 },
        { 13, 1, 0, 0 },
        { 14, 2, 1, 999999999 },
        { 15, 3, -5, 1 },
        { G_MAXUINT64, G_MAXINT64, G_MININT64, 999999999 },
    };
    g_autofree char *hot = NULL;
    g_autofree char *st = NULL;

    if (argc != 2) {
        g_printerr("usage: %s DIR\n", argv[0]);
        return 2;
    }
    hot = g_build_filename(argv[1], "hot_set", NULL);
    st = g_build_filename(argv[1], "template_stamps", NULL);
    if (g_mkdir_with_parents(hot, 0755) < 0 || g_mkdir_with_parents(st, 0755) < 0)
        g_error("cannot make %s", argv[1]);

    saveHotSet(argv[1], "empty", 20 * GiB, NULL, 0, 0);
    saveHotSet(argv[1], "boot", 20 * GiB, boot, G_N_ELEMENTS(boot), 0);
    saveHotSet(argv[1], "boot-aligned-64k", 20 * GiB, boot, G_N_ELEMENTS(boot), 64 * KiB);
    saveHotSet(argv[1], "one-byte", 1 * MiB, one, G_N_ELEMENTS(one), 0);
    saveHotSet(argv[1], "largest-disk", G_MAXINT64, big, G_N_ELEMENTS(big), 0);

    saveStamps(argv[1], "empty", NULL, NULL, 0);
    saveStamps(argv[1], "one", names, stamps, 1);
    saveStamps(argv[1], "escapes", names, stamps, G_N_ELEMENTS(names));
    return 0;
}
