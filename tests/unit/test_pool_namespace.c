/*
 * test_pool_namespace.c: parse and format of the stormpool pool namespace,
 * driven by the cases in test-xml/pool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <libxml/parser.h>
#include <string.h>
#include <unistd.h>

#include "stormpool/error.h"
#include "stormpool/pool.h"
#include "pool/pool_namespace.h"

#define PRIMARY "/srv/hdd/templates"
#define SECONDARY "/srv/ssd/lab"

static char *
caseDir(const char *kind)
{
    const char *top = g_getenv("STORMPOOL_TEST_XML_DIR");

    g_assert_nonnull(top);
    return g_build_filename(top, "pool", kind, NULL);
}


static char *
loadCase(const char *path)
{
    g_autofree char *text = NULL;
    g_autoptr(GString) s = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    s = g_string_new(text);
    g_string_replace(s, "@PRIMARY@", PRIMARY, 0);
    g_string_replace(s, "@SECONDARY@", SECONDARY, 0);
    return g_string_free(g_steal_pointer(&s), FALSE);
}


static SpPool *
parseCase(const char *path, GError **error)
{
    g_autofree char *text = loadCase(path);
    xmlDocPtr doc = xmlReadMemory(text, strlen(text), path, NULL, XML_PARSE_NONET);
    SpPool *pool;

    g_assert_nonnull(doc);
    pool = spPoolNewFromXml(xmlDocGetRootElement(doc), error);
    xmlFreeDoc(doc);
    return pool;
}


/* The document libvirt formats for the pool: its own elements, taken from
 * @expected up to the first line of our namespace, then the namespace's
 * lines as libvirt indents them, then the end of <pool>. */
static char *
formatDocument(const char *expected, GPtrArray *lines)
{
    const char *ours = strstr(expected, "\n  <stormpool:");
    const char *end = strstr(expected, "</pool>");
    g_autoptr(GString) doc = NULL;
    guint i;

    g_assert_nonnull(end);
    doc = g_string_new_len(expected, (ours ? ours + 1 : end) - expected);
    for (i = 0; i < lines->len; i++)
        g_string_append_printf(doc, "  %s\n", (const char *) g_ptr_array_index(lines, i));
    g_string_append(doc, "</pool>\n");
    return g_string_free(g_steal_pointer(&doc), FALSE);
}


/* Whole documents are compared, like libvirt's storagepoolxml2xmltest:
 * a missing, extra or reordered element fails. */
static void
testValidCase(gconstpointer data)
{
    const char *inpath = data;
    g_autofree char *outpath = g_strdup_printf("%.*s.out.xml",
                                               (int) strlen(inpath) - 4, inpath);
    g_autoptr(GError) error = NULL;
    g_autoptr(SpPool) pool = parseCase(inpath, &error);
    g_autoptr(GPtrArray) lines = NULL;
    g_autofree char *expected = loadCase(outpath);
    g_autofree char *actual = NULL;

    g_assert_no_error(error);
    g_assert_nonnull(pool);
    g_assert_cmpstr(spPoolPrimary(pool), ==, PRIMARY);
    g_assert_cmpstr(spPoolSecondary(pool), ==, SECONDARY);
    /* libvirt names our namespace on <pool> whenever the pool has one */
    g_assert_true(g_str_has_prefix(expected, "<pool type='stormpool' "
                                   "xmlns:stormpool='" SP_POOL_NAMESPACE_URI "'>\n"));
    /* status in the input is never taken over */
    lines = spPoolFormatXml(pool);
    actual = formatDocument(expected, lines);
    g_assert_cmpstr(actual, ==, expected);
}


static void
testInvalidCase(gconstpointer data)
{
    const char *path = data;
    g_autofree char *errpath = g_strdup(path);
    g_autofree char *expected = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(SpPool) pool = NULL;

    strcpy(errpath + strlen(errpath) - 3, "err");
    g_assert_true(g_file_get_contents(errpath, &expected, NULL, NULL));
    g_strstrip(expected);

    pool = parseCase(path, &error);
    g_assert_null(pool);
    g_assert_nonnull(error);
    g_assert_true(error->code == SP_ERROR_XML ||
                  error->code == SP_ERROR_INVALID_ARG);
    if (!strstr(error->message, expected))
        g_error("expected '%s' in '%s'", expected, error->message);
}


static void
testFormatStatus(void)
{
    g_autoptr(SpPoolNamespace) ns = g_new0(SpPoolNamespace, 1);
    g_autoptr(GPtrArray) lines = NULL;
    g_autofree char *joined = NULL;
    SpTierUsage primary = { .capacity = 1000, .allocation = 400, .available = 600 };
    SpTierUsage secondary = { .capacity = 18446744073709551615ULL,
                              .allocation = 0, .available = 1 };
    const char *expected =
        "<stormpool:tiers>\n"
        "  <stormpool:tier name='primary' path='/srv/hdd/a&amp;b'>\n"
        "    <stormpool:capacity unit='bytes'>1000</stormpool:capacity>\n"
        "    <stormpool:allocation unit='bytes'>400</stormpool:allocation>\n"
        "    <stormpool:available unit='bytes'>600</stormpool:available>\n"
        "  </stormpool:tier>\n"
        "  <stormpool:tier name='secondary' path='/srv/ssd/lab'>\n"
        "    <stormpool:capacity unit='bytes'>18446744073709551615</stormpool:capacity>\n"
        "    <stormpool:allocation unit='bytes'>0</stormpool:allocation>\n"
        "    <stormpool:available unit='bytes'>1</stormpool:available>\n"
        "  </stormpool:tier>\n"
        "</stormpool:tiers>";

    spPoolNamespaceSetStatus(ns, SP_TIER_PRIMARY, "/srv/hdd/a&b", &primary);
    spPoolNamespaceSetStatus(ns, SP_TIER_SECONDARY, SECONDARY, &secondary);
    lines = spPoolNamespaceFormat(ns);
    g_ptr_array_add(lines, NULL);
    joined = g_strjoinv("\n", (char **) lines->pdata);
    g_assert_cmpstr(joined, ==, expected);

    spPoolNamespaceClearStatus(ns);
    g_clear_pointer(&lines, g_ptr_array_unref);
    lines = spPoolNamespaceFormat(ns);
    g_assert_cmpuint(lines->len, ==, 0);
}


/* The transient tier's usage is read from the directory when formatted:
 * 3 MiB of overlays under a 4 MiB cap leave 1 MiB, just room for one more;
 * a quarter MiB less leaves none. */
static void
testFormatTransientStatus(void)
{
    g_autoptr(SpPoolNamespace) ns = g_new0(SpPoolNamespace, 1);
    g_autofree char *dir = g_dir_make_tmp("sp-transient-XXXXXX", NULL);
    g_autofree char *layer = g_build_filename(dir, "pc01.qcow2.TRANSIENT-pc01", NULL);
    g_autofree char *bytes = g_malloc0(3 * 1024 * 1024);
    SpTierUsage primary = { .capacity = 1000, .allocation = 400, .available = 600 };
    g_autoptr(GPtrArray) lines = NULL;
    g_autofree char *joined = NULL;
    g_autofree char *expected = NULL;

    g_assert_true(g_file_set_contents(layer, bytes, 3 * 1024 * 1024, NULL));
    ns->transient_tier = g_strdup(dir);
    ns->transient_cap = 4 * 1024 * 1024;
    ns->transient_cap_text = g_strdup("4M");
    spPoolNamespaceSetStatus(ns, SP_TIER_PRIMARY, PRIMARY, &primary);
    spPoolNamespaceSetStatus(ns, SP_TIER_SECONDARY, SECONDARY, &primary);
    lines = spPoolNamespaceFormat(ns);
    g_ptr_array_add(lines, NULL);
    joined = g_strjoinv("\n", (char **) lines->pdata);
    expected = g_strdup_printf("<stormpool:transient tier='%s' cap='4M'/>", dir);
    g_assert_cmpstr(g_ptr_array_index(lines, 0), ==, expected);
    g_free(expected);
    expected = g_strdup_printf("  <stormpool:tier name='transient' path='%s'>\n"
                               "    <stormpool:capacity unit='bytes'>4194304</stormpool:capacity>\n"
                               "    <stormpool:allocation unit='bytes'>3145728</stormpool:allocation>\n"
                               "    <stormpool:available unit='bytes'>1048576</stormpool:available>\n"
                               "  </stormpool:tier>\n"
                               "</stormpool:tiers>", dir);
    g_assert_true(g_str_has_suffix(joined, expected));

    ns->transient_cap -= 256 * 1024;
    g_clear_pointer(&lines, g_ptr_array_unref);
    g_clear_pointer(&joined, g_free);
    lines = spPoolNamespaceFormat(ns);
    g_ptr_array_add(lines, NULL);
    joined = g_strjoinv("\n", (char **) lines->pdata);
    g_assert_nonnull(strstr(joined, "<stormpool:available unit='bytes'>0</stormpool:available>\n"
                                    "  </stormpool:tier>\n</stormpool:tiers>"));
    g_assert_cmpint(unlink(layer), ==, 0);
    g_assert_cmpint(rmdir(dir), ==, 0);
}


static void
testFormatReplicas(void)
{
    g_autoptr(SpPoolNamespace) ns = g_new0(SpPoolNamespace, 1);
    g_autoptr(GPtrArray) replicas = g_ptr_array_new_with_free_func((GDestroyNotify) spReplicaStatusFree);
    g_autoptr(GPtrArray) lines = NULL;
    g_autofree char *joined = NULL;
    SpReplicaStatus *r = g_new0(SpReplicaStatus, 1);
    const char *expected =
        "<stormpool:replica policy='copy' prepare='eager'/>\n"
        "<stormpool:tiers>\n"
        "  <stormpool:tier name='primary' path='/hdd'>\n"
        "    <stormpool:capacity unit='bytes'>3</stormpool:capacity>\n"
        "    <stormpool:allocation unit='bytes'>2</stormpool:allocation>\n"
        "    <stormpool:available unit='bytes'>1</stormpool:available>\n"
        "  </stormpool:tier>\n"
        "  <stormpool:tier name='secondary' path='/ssd'>\n"
        "    <stormpool:capacity unit='bytes'>3</stormpool:capacity>\n"
        "    <stormpool:allocation unit='bytes'>2</stormpool:allocation>\n"
        "    <stormpool:available unit='bytes'>1</stormpool:available>\n"
        "  </stormpool:tier>\n"
        "</stormpool:tiers>\n"
        "<stormpool:replicas policy='copy'>\n"
        "  <stormpool:replica template='win10.qcow2' path='/ssd/.stormpool-replicas/win10.qcow2/0123456789abcdef' "
        "dependents='20' size='1073741824' allocation='4096'/>\n"
        "</stormpool:replicas>";

    SpTierUsage usage = { .capacity = 3, .allocation = 2, .available = 1 };

    spPoolNamespaceSetStatus(ns, SP_TIER_PRIMARY, "/hdd", &usage);
    spPoolNamespaceSetStatus(ns, SP_TIER_SECONDARY, "/ssd", &usage);
    ns->have_replica = TRUE;
    ns->replica_policy = SP_REPLICA_COPY;
    ns->replica_eager = TRUE;
    r->template_name = g_strdup("win10.qcow2");
    r->path = g_strdup("/ssd/.stormpool-replicas/win10.qcow2/0123456789abcdef");
    r->dependents = 20;
    r->size = 1073741824;
    r->allocation = 4096;
    g_ptr_array_add(replicas, r);
    spPoolNamespaceSetReplicas(ns, SP_REPLICA_COPY, g_steal_pointer(&replicas));
    lines = spPoolNamespaceFormat(ns);
    g_ptr_array_add(lines, NULL);
    joined = g_strjoinv("\n", (char **) lines->pdata);
    g_assert_cmpstr(joined, ==, expected);
    g_assert_cmpint(spPoolNamespaceReplicaPolicy(ns), ==, SP_REPLICA_COPY);
    g_assert_cmpint(spPoolNamespaceReplicaPolicy(NULL), ==, SP_REPLICA_AUTO);
}


static void
testAdjustReplicas(void)
{
    g_autoptr(SpPoolNamespace) ns = g_new0(SpPoolNamespace, 1);
    SpReplicaStatus *r;

    /* no status held: nothing to adjust */
    spPoolNamespaceAdjustReplica(ns, "t.qcow2", "/ssd/r1", 1, 10, 10);
    g_assert_null(ns->replicas);

    spPoolNamespaceSetReplicas(ns, SP_REPLICA_COPY,
                               g_ptr_array_new_with_free_func((GDestroyNotify) spReplicaStatusFree));
    spPoolNamespaceAdjustReplica(ns, "t.qcow2", "/ssd/r1", 1, 10, 8);
    spPoolNamespaceAdjustReplica(ns, "t.qcow2", "/ssd/r1", 1, 12, 9);
    spPoolNamespaceAdjustReplica(ns, "u.qcow2", "/ssd/r2", 1, 5, 5);
    g_assert_cmpuint(ns->replicas->len, ==, 2);
    r = g_ptr_array_index(ns->replicas, 0);
    g_assert_cmpstr(r->template_name, ==, "t.qcow2");
    g_assert_cmpuint(r->dependents, ==, 2);
    g_assert_cmpuint(r->size, ==, 12);
    g_assert_cmpuint(r->allocation, ==, 9);

    spPoolNamespaceAdjustReplica(ns, "t.qcow2", "/ssd/r1", -3, 12, 9);
    g_assert_cmpuint(r->dependents, ==, 0);

    spPoolNamespaceRemoveReplica(ns, "/ssd/r1");
    spPoolNamespaceRemoveReplica(ns, "/ssd/none");
    g_assert_cmpuint(ns->replicas->len, ==, 1);
    r = g_ptr_array_index(ns->replicas, 0);
    g_assert_cmpstr(r->path, ==, "/ssd/r2");
}


/* One parse of <pool> gives the tier paths and the namespace together:
 * the paths stripped as spPoolNewFromXml keeps them, untouched on error. */
static void
testParseGivesTierPaths(void)
{
    const char *text =
        "<pool type='stormpool' xmlns:stormpool='" SP_POOL_NAMESPACE_URI "'>\n"
        "  <source><dir path=' " PRIMARY " '/></source>\n"
        "  <target><path>\n    " SECONDARY "\n  </path></target>\n"
        "  <stormpool:replica policy='copy'/>\n"
        "</pool>\n";
    xmlDocPtr doc = xmlReadMemory(text, strlen(text), "pool.xml", NULL, XML_PARSE_NONET);
    g_autoptr(SpPoolNamespace) ns = NULL;
    g_autoptr(SpPoolNamespace) again = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *primary = NULL;
    g_autofree char *secondary = NULL;
    char *untouched = (char *) "x";
    xmlNodePtr target;

    g_assert_nonnull(doc);
    ns = spPoolNamespaceParse(xmlDocGetRootElement(doc), &primary, &secondary, &error);
    g_assert_no_error(error);
    g_assert_cmpstr(primary, ==, PRIMARY);
    g_assert_cmpstr(secondary, ==, SECONDARY);
    g_assert_cmpint(ns->replica_policy, ==, SP_REPLICA_COPY);
    /* the paths are optional outputs */
    again = spPoolNamespaceParse(xmlDocGetRootElement(doc), NULL, NULL, &error);
    g_assert_nonnull(again);

    /* a pool without <target> is refused and sets neither path */
    target = xmlDocGetRootElement(doc)->children->next->next->next;
    g_assert_cmpstr((const char *) target->name, ==, "target");
    xmlUnlinkNode(target);
    xmlFreeNode(target);
    g_assert_null(spPoolNamespaceParse(xmlDocGetRootElement(doc), &untouched, NULL, &error));
    g_assert_nonnull(error);
    g_assert_cmpstr(untouched, ==, "x");
    xmlFreeDoc(doc);
}


static SpPool *
parseText(const char *text)
{
    xmlDocPtr doc = xmlReadMemory(text, strlen(text), "pool.xml", NULL, XML_PARSE_NONET);
    g_autoptr(GError) error = NULL;
    SpPool *pool;

    g_assert_nonnull(doc);
    pool = spPoolNewFromXml(xmlDocGetRootElement(doc), &error);
    xmlFreeDoc(doc);
    g_assert_no_error(error);
    g_assert_nonnull(pool);
    return pool;
}


#define POOL_START "<pool type='stormpool' xmlns:stormpool='" SP_POOL_NAMESPACE_URI "'>" \
    "<source><dir path='" PRIMARY "'/></source><target><path>" SECONDARY "</path></target>"

/* A tab or line break in the RAM tier's path survives pool-dumpxml and
 * pool-define: an XML parser makes spaces of them in an attribute value,
 * unless they are written as character references. Found by the round
 * trip of fuzz/fuzz_pool_namespace. */
static void
testAttributeWhitespace(void)
{
    const char *line = "<stormpool:replica policy='copy' "
                       "tier='/dev/shm/a&#9;b&#10;c&#13;d' cap='2G'/>";
    g_autofree char *text = g_strdup_printf(POOL_START "%s</pool>", line);
    g_autoptr(SpPool) pool = parseText(text);
    g_autoptr(SpPool) again = NULL;
    g_autoptr(GPtrArray) lines = spPoolFormatXml(pool);
    g_autoptr(GPtrArray) lines2 = NULL;
    g_autofree char *text2 = NULL;

    g_assert_cmpuint(lines->len, ==, 1);
    g_assert_cmpstr(g_ptr_array_index(lines, 0), ==, line);

    text2 = g_strdup_printf(POOL_START "%s</pool>", (char *) g_ptr_array_index(lines, 0));
    again = parseText(text2);
    lines2 = spPoolFormatXml(again);
    g_assert_cmpuint(lines2->len, ==, 1);
    g_assert_cmpstr(g_ptr_array_index(lines2, 0), ==, line);
}


/* Trailing slashes and white space go from the RAM tier's path together,
 * whatever their order: what is left parses to itself again. Found by
 * fuzz/fuzz_pool_namespace ('/dev/x&#10;/' became '/dev/x\n', written as
 * '/dev/x&#10;', which the next pool-define read as '/dev/x'). */
static void
testReplicaTierTrailing(void)
{
    static const char * const tiers[] = {
        "/dev/shm/x&#10;/", "/dev/shm/x/ ", "/dev/shm/x&#9;/&#10;//", " /dev/shm/x// &#13;",
    };
    gsize i;

    for (i = 0; i < G_N_ELEMENTS(tiers); i++) {
        g_autofree char *text = g_strdup_printf(POOL_START "<stormpool:replica policy='hot' "
                                                "tier='%s' cap='1G'/></pool>", tiers[i]);
        g_autoptr(SpPool) pool = parseText(text);
        g_autoptr(GPtrArray) lines = spPoolFormatXml(pool);

        g_assert_cmpuint(lines->len, ==, 1);
        g_assert_cmpstr(g_ptr_array_index(lines, 0), ==,
                        "<stormpool:replica policy='hot' tier='/dev/shm/x' cap='1G'/>");
    }
}


static void
addCases(const char *kind, GTestDataFunc func)
{
    g_autofree char *dir = caseDir(kind);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const char *name;
    size_t i;

    g_assert_nonnull(d);
    while ((name = g_dir_read_name(d))) {
        /* libvirt-* cases are refused by libvirt itself before our code
         * runs; the integration suite covers them. */
        if (!g_str_has_suffix(name, ".xml") || g_str_has_suffix(name, ".out.xml") ||
            g_str_has_prefix(name, "libvirt-"))
            continue;
        g_ptr_array_add(names, g_strdup(name));
    }
    g_assert_cmpuint(names->len, >, 0);
    g_ptr_array_sort(names, (GCompareFunc) g_ascii_strcasecmp);
    for (i = 0; i < names->len; i++) {
        const char *n = g_ptr_array_index(names, i);
        g_autofree char *testpath = g_strdup_printf("/pool-namespace/%s/%s", kind, n);
        /* freed at exit: GTest keeps the data pointer */
        char *file = g_build_filename(dir, n, NULL);
        g_test_add_data_func_full(testpath, file, func, g_free);
    }
}


int
main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    addCases("valid", testValidCase);
    addCases("invalid", testInvalidCase);
    g_test_add_func("/pool-namespace/format-status", testFormatStatus);
    g_test_add_func("/pool-namespace/format-transient-status", testFormatTransientStatus);
    g_test_add_func("/pool-namespace/format-replicas", testFormatReplicas);
    g_test_add_func("/pool-namespace/adjust-replicas", testAdjustReplicas);
    g_test_add_func("/pool-namespace/parse-gives-tier-paths", testParseGivesTierPaths);
    g_test_add_func("/pool-namespace/attribute-whitespace", testAttributeWhitespace);
    g_test_add_func("/pool-namespace/replica-tier-trailing", testReplicaTierTrailing);
    ret = g_test_run();
    xmlCleanupParser();
    return ret;
}
