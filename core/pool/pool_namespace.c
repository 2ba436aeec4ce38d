/*
 * pool_namespace.c: the stormpool XML namespace inside <pool>
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>

#include "stormpool/error.h"
#include "pool/pool_namespace.h"
#include "replica/ram_tier.h"

static gboolean
isOurs(xmlNodePtr node)
{
    return node->type == XML_ELEMENT_NODE && node->ns && node->ns->href &&
           strcmp((const char *) node->ns->href, SP_POOL_NAMESPACE_URI) == 0;
}


static gboolean
isNamed(xmlNodePtr node, const char *name)
{
    return strcmp((const char *) node->name, name) == 0;
}


/* <stormpool:tiers> is status output: check its shape so that typos are
 * reported, then drop it, like libvirt drops <capacity> of a pool. */
static gboolean
checkTiersStatus(xmlNodePtr tiers, GError **error)
{
    xmlNodePtr tier;

    for (tier = tiers->children; tier; tier = tier->next) {
        g_autofree char *name = NULL;

        if (tier->type != XML_ELEMENT_NODE)
            continue;
        if (!isOurs(tier) || !isNamed(tier, "tier")) {
            g_set_error(error, SP_ERROR, SP_ERROR_XML,
                        "unexpected element <%s> in <stormpool:tiers>",
                        (const char *) tier->name);
            return FALSE;
        }
        name = (char *) xmlGetProp(tier, (const xmlChar *) "name");
        if (!name || (strcmp(name, "primary") != 0 && strcmp(name, "secondary") != 0 &&
                      strcmp(name, "ram") != 0 && strcmp(name, "transient") != 0)) {
            g_set_error(error, SP_ERROR, SP_ERROR_XML,
                        "<stormpool:tier> needs name='primary', name='secondary', "
                        "name='ram' or name='transient', got '%s'", name ? name : "");
            return FALSE;
        }
    }
    return TRUE;
}


static xmlNodePtr
findChild(xmlNodePtr parent, const char *name)
{
    xmlNodePtr node;

    for (node = parent ? parent->children : NULL; node; node = node->next) {
        if (node->type == XML_ELEMENT_NODE && !node->ns && isNamed(node, name))
            return node;
    }
    return NULL;
}


/* The tier directories named by <source><dir> and <target><path>. */
static void
readTierPaths(xmlNodePtr pool, char **primary, char **secondary)
{
    xmlNodePtr dir = findChild(findChild(pool, "source"), "dir");
    xmlNodePtr path = findChild(findChild(pool, "target"), "path");

    if (dir && (*primary = (char *) xmlGetProp(dir, (const xmlChar *) "path")))
        g_strstrip(*primary);
    if (path && (*secondary = (char *) xmlNodeGetContent(path)))
        g_strstrip(*secondary);
}


/* A RAM tier (@what: replica or transient) is a directory of its own:
 * files in it must never be taken for templates or instances, nor be
 * removed with a tier. */
static gboolean
validateExtraTier(const char *what, const char *tier, const char *primary,
                  const char *secondary, GError **error)
{
    if (!tier)
        return TRUE;
    if (!g_path_is_absolute(tier)) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML,
                    "the %s tier '%s' must be an absolute directory path", what, tier);
        return FALSE;
    }
    if ((primary && spTierPathsOverlap(tier, primary)) ||
        (secondary && spTierPathsOverlap(tier, secondary))) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML,
                    "the %s tier '%s' must be a directory of its own, neither "
                    "the primary tier '%s' nor the secondary tier '%s', nor inside "
                    "or around them", what, tier, primary ? primary : "",
                    secondary ? secondary : "");
        return FALSE;
    }
    return TRUE;
}


/* The replica tier's usage counts every file in it and its eviction would
 * see overlays as strangers: the two RAM tiers never share a directory. */
static gboolean
validateRamTiers(const SpPoolNamespace *ns, const char *primary, const char *secondary,
                 GError **error)
{
    if (!validateExtraTier("replica", ns->replica_tier, primary, secondary, error) ||
        !validateExtraTier("transient", ns->transient_tier, primary, secondary, error))
        return FALSE;
    if (ns->replica_tier && ns->transient_tier &&
        spTierPathsOverlap(ns->replica_tier, ns->transient_tier)) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML,
                    "the transient tier '%s' and the replica tier '%s' must be "
                    "separate directories, neither inside the other",
                    ns->transient_tier, ns->replica_tier);
        return FALSE;
    }
    return TRUE;
}


/* A RAM tier's path as written, without white space around it or
 * trailing slashes. Stripping once is not enough: '/a\n/' loses its slash
 * only after the strip, and would lose the line break when the pool's XML
 * is read again. */
static char *
ramTierPath(const char *text)
{
    g_autofree char *path = g_strstrip(g_strdup(text));

    for (;;) {
        g_autofree char *normal = spTierPathNormalise(path);

        g_strstrip(normal);
        if (strcmp(normal, path) == 0)
            return g_steal_pointer(&path);
        g_free(path);
        path = g_steal_pointer(&normal);
    }
}


/* tier= and cap= come together, and only with a policy that makes
 * replica files: a tier without a cap could fill the host's RAM. */
static gboolean
parseReplicaTier(SpPoolNamespace *ns, xmlNodePtr node, GError **error)
{
    g_autofree char *tier = (char *) xmlGetProp(node, (const xmlChar *) "tier");
    g_autofree char *cap = (char *) xmlGetProp(node, (const xmlChar *) "cap");
    g_autoptr(GError) err = NULL;

    if (!tier && !cap)
        return TRUE;
    if (!tier || !cap) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML,
                    "<stormpool:replica> needs both tier='DIR' and cap='SIZE' "
                    "(e.g. cap='2G'), or neither");
        return FALSE;
    }
    if (ns->replica_policy != SP_REPLICA_COPY && ns->replica_policy != SP_REPLICA_HOT) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML,
                    "a replica tier needs policy='copy' or policy='hot', not '%s'",
                    spReplicaPolicyName(ns->replica_policy));
        return FALSE;
    }
    if (!spRamTierParseCap(cap, &ns->replica_cap, &err)) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML, "invalid replica tier cap: %s",
                    err->message);
        return FALSE;
    }
    ns->replica_tier = ramTierPath(tier);
    ns->replica_cap_text = g_strdup(g_strstrip(cap));
    return TRUE;
}


static gboolean
parseReplica(SpPoolNamespace *ns, xmlNodePtr node, GError **error)
{
    g_autofree char *policy = (char *) xmlGetProp(node, (const xmlChar *) "policy");
    g_autofree char *prepare = (char *) xmlGetProp(node, (const xmlChar *) "prepare");

    if (ns->have_replica) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML,
                    "<stormpool:replica> may be given only once");
        return FALSE;
    }
    ns->have_replica = TRUE;
    ns->replica_policy = SP_REPLICA_AUTO;
    if (policy && !spReplicaPolicyParse(policy, &ns->replica_policy)) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML,
                    "unknown replica policy '%s': expected none, copy, link, hot or auto",
                    policy);
        return FALSE;
    }
    if (prepare && strcmp(prepare, "eager") != 0 && strcmp(prepare, "lazy") != 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML,
                    "unknown replica preparation '%s': expected eager or lazy",
                    prepare);
        return FALSE;
    }
    ns->replica_eager = prepare && strcmp(prepare, "eager") == 0;
    if (ns->replica_eager && ns->replica_policy == SP_REPLICA_NONE) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML,
                    "prepare='eager' needs a replica policy other than 'none'");
        return FALSE;
    }
    return parseReplicaTier(ns, node, error);
}


/* Both attributes are required: overlays without a cap could fill the
 * host's RAM, and a cap without a tier has nothing to bound. */
static gboolean
parseTransient(SpPoolNamespace *ns, xmlNodePtr node, GError **error)
{
    g_autofree char *tier = (char *) xmlGetProp(node, (const xmlChar *) "tier");
    g_autofree char *cap = (char *) xmlGetProp(node, (const xmlChar *) "cap");
    g_autoptr(GError) err = NULL;

    if (ns->transient_tier) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML,
                    "<stormpool:transient> may be given only once");
        return FALSE;
    }
    if (!tier || !cap) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML,
                    "<stormpool:transient> needs both tier='DIR' and cap='SIZE' "
                    "(e.g. cap='2G')");
        return FALSE;
    }
    if (!spRamTierParseCap(g_strstrip(cap), &ns->transient_cap, &err)) {
        g_set_error(error, SP_ERROR, SP_ERROR_XML, "invalid transient tier cap: %s",
                    err->message);
        return FALSE;
    }
    ns->transient_tier = ramTierPath(tier);
    ns->transient_cap_text = g_strdup(cap);
    return TRUE;
}


static gboolean
parseElement(SpPoolNamespace *ns, xmlNodePtr node, GError **error)
{
    if (isNamed(node, "tiers"))
        return checkTiersStatus(node, error);
    if (isNamed(node, "replicas") || isNamed(node, "versions"))
        return TRUE;                /* status: dropped like <tiers> */
    if (isNamed(node, "replica"))
        return parseReplica(ns, node, error);
    if (isNamed(node, "transient"))
        return parseTransient(ns, node, error);
    g_set_error(error, SP_ERROR, SP_ERROR_XML,
                "unsupported element <%s:%s> in a stormpool pool",
                SP_POOL_NAMESPACE_PREFIX, (const char *) node->name);
    return FALSE;
}


SpPoolNamespace *
spPoolNamespaceParse(xmlNodePtr pool, char **primary_out, char **secondary_out,
                     GError **error)
{
    g_autoptr(SpPoolNamespace) ns = g_new0(SpPoolNamespace, 1);
    g_autofree char *primary = NULL;
    g_autofree char *secondary = NULL;
    xmlNodePtr node;

    /* Namespace parsing is the only hook a storage backend gets when a
     * pool is defined, so the tier directories are checked here too: a
     * pool whose tiers overlap is refused by pool-define, not only by
     * pool-start. */
    readTierPaths(pool, &primary, &secondary);
    if (!spTierLayoutValidatePaths(primary, secondary, error))
        return NULL;

    for (node = pool ? pool->children : NULL; node; node = node->next) {
        if (isOurs(node) && !parseElement(ns, node, error))
            return NULL;
    }
    if (!validateRamTiers(ns, primary, secondary, error))
        return NULL;
    if (primary_out)
        *primary_out = g_steal_pointer(&primary);
    if (secondary_out)
        *secondary_out = g_steal_pointer(&secondary);
    return g_steal_pointer(&ns);
}


void
spReplicaStatusFree(SpReplicaStatus *status)
{
    if (!status)
        return;
    g_free(status->template_name);
    g_free(status->path);
    g_free(status->format);
    g_free(status);
}


static SpReplicaStatus *
findReplica(SpPoolNamespace *ns, const char *path, guint *index)
{
    guint i;

    for (i = 0; ns->replicas && i < ns->replicas->len; i++) {
        SpReplicaStatus *r = g_ptr_array_index(ns->replicas, i);
        if (strcmp(r->path, path) == 0) {
            if (index)
                *index = i;
            return r;
        }
    }
    return NULL;
}


void
spPoolNamespaceAdjustReplica(SpPoolNamespace *ns, const char *template_name,
                             const char *path, int delta,
                             guint64 size, guint64 allocation)
{
    SpReplicaStatus *r;

    if (!ns || !ns->replicas)
        return;
    if (!(r = findReplica(ns, path, NULL))) {
        r = g_new0(SpReplicaStatus, 1);
        r->template_name = g_strdup(template_name);
        r->path = g_strdup(path);
        g_ptr_array_add(ns->replicas, r);
    }
    if (delta < 0 && (guint) -delta > r->dependents)
        r->dependents = 0;
    else
        r->dependents += delta;
    r->size = size;
    r->allocation = allocation;
}


void
spPoolNamespaceRemoveReplica(SpPoolNamespace *ns, const char *path)
{
    guint index;

    if (ns && findReplica(ns, path, &index))
        g_ptr_array_remove_index(ns->replicas, index);
}


SpReplicaPolicy
spPoolNamespaceReplicaPolicy(const SpPoolNamespace *ns)
{
    return ns && ns->have_replica ? ns->replica_policy : SP_REPLICA_AUTO;
}


void
spPoolNamespaceClearStatus(SpPoolNamespace *ns)
{
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(ns->tiers); i++)
        g_clear_pointer(&ns->tiers[i].path, g_free);
    memset(ns->tiers, 0, sizeof(ns->tiers));
    g_clear_pointer(&ns->replicas, g_ptr_array_unref);
    g_clear_pointer(&ns->versions, g_ptr_array_unref);
    ns->have_ram_status = FALSE;
    ns->have_status = FALSE;
}


void
spPoolNamespaceSetRamStatus(SpPoolNamespace *ns, guint64 used)
{
    ns->ram_usage.capacity = ns->replica_cap;
    ns->ram_usage.allocation = used;
    ns->ram_usage.available = used < ns->replica_cap ? ns->replica_cap - used : 0;
    ns->have_ram_status = TRUE;
}


void
spPoolNamespaceSetReplicas(SpPoolNamespace *ns, SpReplicaPolicy effective,
                           GPtrArray *replicas)
{
    g_clear_pointer(&ns->replicas, g_ptr_array_unref);
    ns->replicas = replicas;
    ns->effective_policy = effective;
    ns->have_status = TRUE;
}


void
spPoolNamespaceSetVersions(SpPoolNamespace *ns, GPtrArray *versions)
{
    g_clear_pointer(&ns->versions, g_ptr_array_unref);
    ns->versions = versions;
}


void
spPoolNamespaceFree(SpPoolNamespace *ns)
{
    if (!ns)
        return;
    spPoolNamespaceClearStatus(ns);
    g_free(ns->replica_tier);
    g_free(ns->replica_cap_text);
    g_free(ns->transient_tier);
    g_free(ns->transient_cap_text);
    g_free(ns);
}


void
spPoolNamespaceSetStatus(SpPoolNamespace *ns, SpTier tier,
                         const char *path, const SpTierUsage *usage)
{
    SpTierStatus *status = &ns->tiers[tier];

    g_free(status->path);
    status->path = g_strdup(path);
    status->usage = *usage;
    ns->have_status = TRUE;
}


/* Text for an attribute value. g_markup_escape_text() leaves tabs and line
 * breaks as they are, and an XML parser turns those into spaces in an
 * attribute value (XML 1.0, 3.3.3): a RAM tier '/a<TAB>b' would come back
 * from pool-dumpxml and pool-define as '/a b'. Character references keep
 * them. */
char *
spPoolNamespaceEscape(const char *text)
{
    g_autofree char *escaped = g_markup_escape_text(text, -1);
    GString *out = g_string_new(escaped);

    g_string_replace(out, "\t", "&#9;", 0);
    g_string_replace(out, "\n", "&#10;", 0);
    g_string_replace(out, "\r", "&#13;", 0);
    return g_string_free(out, FALSE);
}


static void
addLine(GPtrArray *lines, int level, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static void
addLine(GPtrArray *lines, int level, const char *fmt, ...)
{
    va_list args;
    g_autofree char *text = NULL;

    va_start(args, fmt);
    text = g_strdup_vprintf(fmt, args);
    va_end(args);
    g_ptr_array_add(lines, g_strdup_printf("%*s%s", level * 2, "", text));
}


static void
formatUsage(GPtrArray *lines, const char *name, const char *path_text,
            const SpTierUsage *usage)
{
    g_autofree char *path = spPoolNamespaceEscape(path_text ? path_text : "");
    const SpTierUsage *u = usage;

    addLine(lines, 1, "<%s:tier name='%s' path='%s'>", SP_POOL_NAMESPACE_PREFIX, name, path);
    addLine(lines, 2, "<%s:capacity unit='bytes'>%" G_GUINT64_FORMAT "</%s:capacity>",
            SP_POOL_NAMESPACE_PREFIX, u->capacity, SP_POOL_NAMESPACE_PREFIX);
    addLine(lines, 2, "<%s:allocation unit='bytes'>%" G_GUINT64_FORMAT "</%s:allocation>",
            SP_POOL_NAMESPACE_PREFIX, u->allocation, SP_POOL_NAMESPACE_PREFIX);
    addLine(lines, 2, "<%s:available unit='bytes'>%" G_GUINT64_FORMAT "</%s:available>",
            SP_POOL_NAMESPACE_PREFIX, u->available, SP_POOL_NAMESPACE_PREFIX);
    addLine(lines, 1, "</%s:tier>", SP_POOL_NAMESPACE_PREFIX);
}


static void
formatTier(GPtrArray *lines, SpTier tier, const SpTierStatus *status)
{
    formatUsage(lines, spTierName(tier), status->path, &status->usage);
}


/* The RAM tier's capacity is its cap, not the size of the tmpfs. */
static void
formatRamTier(GPtrArray *lines, const SpPoolNamespace *ns)
{
    formatUsage(lines, "ram", ns->replica_tier, &ns->ram_usage);
}


void
spPoolNamespaceTransientUsage(const SpPoolNamespace *ns, guint64 used, SpTierUsage *usage)
{
    usage->capacity = ns->transient_cap;
    usage->allocation = used;
    usage->available = 0;
    if (used < ns->transient_cap && ns->transient_cap - used >= SP_TRANSIENT_LAYER_ROOM)
        usage->available = ns->transient_cap - used;
}


/* Read now (see spPoolNamespaceFormat); a tier that cannot be read shows
 * nothing available, so that no start counts on it. */
static void
formatTransientTier(GPtrArray *lines, const SpPoolNamespace *ns)
{
    g_autoptr(GError) err = NULL;
    SpTierUsage usage;
    guint64 used = 0;

    if (!spRamTierUsage(ns->transient_tier, &used, &err)) {
        g_warning("cannot read the usage of the transient tier: %s", err->message);
        used = ns->transient_cap;
    }
    spPoolNamespaceTransientUsage(ns, used, &usage);
    formatUsage(lines, "transient", ns->transient_tier, &usage);
}


/* One <stormpool:@element .../> per replica or kept version of @images
 * (SpReplicaStatus): which template, which file, how many depend on it;
 * and, on the replica new instances of the template get now, its format
 * (a transient disk on the template itself reads through that one). */
static void
formatImages(GPtrArray *lines, const char *element, const GPtrArray *images)
{
    guint i;

    for (i = 0; i < images->len; i++) {
        SpReplicaStatus *r = g_ptr_array_index(images, i);
        g_autofree char *name = spPoolNamespaceEscape(r->template_name);
        g_autofree char *path = spPoolNamespaceEscape(r->path);

        g_autofree char *current = NULL;

        if (r->format)
            current = g_strdup_printf(" current='yes' format='%s'", r->format);
        addLine(lines, 1, "<%s:%s template='%s' path='%s' dependents='%u' "
                "size='%" G_GUINT64_FORMAT "' allocation='%" G_GUINT64_FORMAT "'%s/>",
                SP_POOL_NAMESPACE_PREFIX, element, name, path, r->dependents,
                r->size, r->allocation, current ? current : "");
    }
}


static void
formatReplicas(GPtrArray *lines, const SpPoolNamespace *ns)
{
    if (!ns->replicas)
        return;
    if (ns->replicas->len == 0) {
        addLine(lines, 0, "<%s:replicas policy='%s'/>", SP_POOL_NAMESPACE_PREFIX,
                spReplicaPolicyName(ns->effective_policy));
        return;
    }
    addLine(lines, 0, "<%s:replicas policy='%s'>", SP_POOL_NAMESPACE_PREFIX,
            spReplicaPolicyName(ns->effective_policy));
    formatImages(lines, "replica", ns->replicas);
    addLine(lines, 0, "</%s:replicas>", SP_POOL_NAMESPACE_PREFIX);
}


/* Shown only while a template has kept versions: a pool without them
 * reads as it always did. */
static void
formatVersions(GPtrArray *lines, const SpPoolNamespace *ns)
{
    if (!ns->versions || ns->versions->len == 0)
        return;
    addLine(lines, 0, "<%s:versions>", SP_POOL_NAMESPACE_PREFIX);
    formatImages(lines, "version", ns->versions);
    addLine(lines, 0, "</%s:versions>", SP_POOL_NAMESPACE_PREFIX);
}


static void
formatReplica(GPtrArray *lines, const SpPoolNamespace *ns)
{
    g_autofree char *tier = NULL;

    if (ns->replica_tier) {
        g_autofree char *path = spPoolNamespaceEscape(ns->replica_tier);
        g_autofree char *size = spPoolNamespaceEscape(ns->replica_cap_text);

        tier = g_strdup_printf(" tier='%s' cap='%s'", path, size);
    }
    addLine(lines, 0, "<%s:replica policy='%s'%s%s/>", SP_POOL_NAMESPACE_PREFIX,
            spReplicaPolicyName(ns->replica_policy),
            ns->replica_eager ? " prepare='eager'" : "", tier ? tier : "");
}


static void
formatTransient(GPtrArray *lines, const SpPoolNamespace *ns)
{
    g_autofree char *path = spPoolNamespaceEscape(ns->transient_tier);
    g_autofree char *size = spPoolNamespaceEscape(ns->transient_cap_text);

    addLine(lines, 0, "<%s:transient tier='%s' cap='%s'/>", SP_POOL_NAMESPACE_PREFIX,
            path, size);
}


GPtrArray *
spPoolNamespaceFormat(const SpPoolNamespace *ns)
{
    GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);

    if (!ns)
        return lines;

    if (ns->have_replica)
        formatReplica(lines, ns);
    if (ns->transient_tier)
        formatTransient(lines, ns);
    if (!ns->have_status)
        return lines;

    addLine(lines, 0, "<%s:tiers>", SP_POOL_NAMESPACE_PREFIX);
    formatTier(lines, SP_TIER_PRIMARY, &ns->tiers[SP_TIER_PRIMARY]);
    formatTier(lines, SP_TIER_SECONDARY, &ns->tiers[SP_TIER_SECONDARY]);
    if (ns->have_ram_status)
        formatRamTier(lines, ns);
    if (ns->transient_tier)
        formatTransientTier(lines, ns);
    addLine(lines, 0, "</%s:tiers>", SP_POOL_NAMESPACE_PREFIX);
    formatReplicas(lines, ns);
    formatVersions(lines, ns);
    return lines;
}
