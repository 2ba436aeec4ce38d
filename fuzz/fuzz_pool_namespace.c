/*
 * fuzz_pool_namespace.c: libFuzzer target of the pool XML parser
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The input is a pool definition as virsh pool-define hands it to libvirt.
 * libxml2 parses it with the options libvirt uses; spPoolNewFromXml() takes
 * the <pool> node, as the module's namespace parser does, and so runs
 * spPoolNamespaceParse() and the tier path checks. A pool that parses must
 * survive what pool-dumpxml and pool-define do to it: its namespace lines
 * formatted with its tiers (as libvirt keeps them) and parsed again give
 * the same pool.
 */

#include <libxml/parser.h>
#include <string.h>

#include "fuzz_common.h"
#include "stormpool/error.h"
#include "stormpool/pool.h"
#include "pool/pool_namespace.h"

int
LLVMFuzzerInitialize(int *argc G_GNUC_UNUSED, char ***argv G_GNUC_UNUSED)
{
    fuzzSetup();
    xmlInitParser();
    return 0;
}


static xmlNodePtr
findChild(xmlNodePtr parent, const char *name)
{
    xmlNodePtr node;

    for (node = parent ? parent->children : NULL; node; node = node->next) {
        if (node->type == XML_ELEMENT_NODE && !node->ns &&
            strcmp((const char *) node->name, name) == 0)
            return node;
    }
    return NULL;
}


/* libvirt keeps <source><dir path> and <target><path> as written, and
 * formats them so: @primary and @secondary are those texts. */
static SpPool *
parsePool(const char *text, size_t len, char **primary, char **secondary,
          GError **error)
{
    xmlDocPtr doc = xmlReadMemory(text, len, "pool.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOWARNING |
                                  XML_PARSE_NOERROR);
    xmlNodePtr root;
    xmlNodePtr dir;
    xmlNodePtr path;
    SpPool *pool;

    if (!doc)
        return NULL;
    root = xmlDocGetRootElement(doc);
    pool = spPoolNewFromXml(root, error);
    if (pool) {
        dir = findChild(findChild(root, "source"), "dir");
        path = findChild(findChild(root, "target"), "path");
        g_assert_nonnull(dir);
        g_assert_nonnull(path);
        *primary = (char *) xmlGetProp(dir, (const xmlChar *) "path");
        *secondary = (char *) xmlNodeGetContent(path);
    } else {
        g_assert_nonnull(*error);
    }
    xmlFreeDoc(doc);
    return pool;
}


static char *
joinLines(GPtrArray *lines)
{
    GString *out = g_string_new(NULL);
    guint i;

    for (i = 0; i < lines->len; i++)
        g_string_append_printf(out, "  %s\n", (const char *) g_ptr_array_index(lines, i));
    return g_string_free(out, FALSE);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(SpPool) pool = NULL;
    g_autoptr(SpPool) again = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) lines = NULL;
    g_autoptr(GPtrArray) againLines = NULL;
    g_autofree char *primary = NULL;
    g_autofree char *secondary = NULL;
    g_autofree char *primary2 = NULL;
    g_autofree char *secondary2 = NULL;
    g_autofree char *primaryText = NULL;
    g_autofree char *secondaryText = NULL;
    g_autofree char *ours = NULL;
    g_autofree char *oursAgain = NULL;
    g_autofree char *doc = NULL;

    if (size > G_MAXINT)
        return 0;
    if (!(pool = parsePool((const char *) data, size, &primary, &secondary, &error)))
        return 0;
    g_assert_no_error(error);

    lines = spPoolFormatXml(pool);
    ours = joinLines(lines);
    primaryText = spPoolNamespaceEscape(primary);
    secondaryText = spPoolNamespaceEscape(secondary);
    doc = g_strdup_printf("<pool type='stormpool' xmlns:stormpool='%s'>\n"
                          "  <name>fuzz</name>\n"
                          "  <source>\n    <dir path='%s'/>\n  </source>\n"
                          "  <target>\n    <path>%s</path>\n  </target>\n"
                          "%s</pool>\n",
                          SP_POOL_NAMESPACE_URI, primaryText, secondaryText, ours);

    again = parsePool(doc, strlen(doc), &primary2, &secondary2, &error);
    if (!again)
        g_error("the pool's own XML does not parse again: %s\n%s",
                error ? error->message : "not well-formed", doc);
    g_assert_cmpstr(spPoolPrimary(again), ==, spPoolPrimary(pool));
    g_assert_cmpstr(spPoolSecondary(again), ==, spPoolSecondary(pool));
    againLines = spPoolFormatXml(again);
    oursAgain = joinLines(againLines);
    if (strcmp(ours, oursAgain) != 0)
        g_error("the namespace changed through a round trip:\n%s---\n%s", ours, oursAgain);
    return 0;
}
