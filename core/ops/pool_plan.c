/*
 * pool_plan.c: what a new volume will be, decided before it is written
 *
 * libvirt's createVol runs with the pool object locked and only decides;
 * buildVol writes afterwards without the lock. So the plan answers from
 * the pool's state (pool_index.c, the replica registry, the uploads):
 * which template an instance backs onto, in which format, how big, and
 * where the file goes. Every refusal of a new volume's XML is here.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>

#include "pool/pool_private.h"
#include "stormpool/error.h"
#include "fs/volume_name.h"
#include "image/image_header.h"
#include "image/qcow2_overlay.h"

void
spVolumePlanFree(SpVolumePlan *plan)
{
    if (!plan)
        return;
    g_free(plan->path);
    g_free(plan->backing_path);
    g_free(plan);
}


static const char *
formatName(SpImageFormat format)
{
    return format == SP_IMAGE_FORMAT_QCOW2 ? "qcow2" : "raw";
}


static gboolean
checkRequest(const SpVolumeRequest *request, GError **error)
{
    if (!spVolumeNameValidate(request->name, error))
        return FALSE;
    if (request->format != SP_IMAGE_FORMAT_QCOW2 && request->format != SP_IMAGE_FORMAT_RAW) {
        g_set_error(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                    "unsupported volume format '%s': stormpool volumes are qcow2 or raw",
                    request->format_name);
        return FALSE;
    }
    if (request->encrypted) {
        g_set_error_literal(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                            "stormpool does not support encrypted volumes");
        return FALSE;
    }
    return TRUE;
}


/* The backing store is given as a template (by name, path or key) or, by
 * vol-clone of an instance, as the replica of one. */
static SpVolumeEntry *
lookupTemplate(SpPool *pool, const SpVolumeRequest *request, gboolean *exact_replica,
               GError **error)
{
    g_autofree char *replica_of = spPoolReplicaTemplateName(pool, request->backing_spec);
    const char *spec = replica_of ? replica_of : request->backing_spec;
    g_autoptr(SpVolumeEntry) template = NULL;

    /* A new version whose upload has just ended serves this instance. */
    spPoolVersionsSettle(pool, NULL);
    template = spPoolIndexLookup(pool, spec);

    if (!template) {
        g_set_error(error, SP_ERROR, SP_ERROR_NOT_FOUND,
                    "backing volume '%s' is not a template of pool '%s' "
                    "(templates are the volumes in '%s')",
                    spec, request->pool_name, pool->primary);
        return NULL;
    }
    if (template->role != SP_ROLE_TEMPLATE) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "backing volume '%s' is %s; an instance must back onto "
                    "a template in the primary tier '%s'", template->name,
                    template->role == SP_ROLE_INSTANCE ? "an instance" : "a layer",
                    pool->primary);
        return NULL;
    }
    if (template->building) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_STATE,
                    "template '%s' is still being created", template->name);
        return NULL;
    }
    if (!spPoolCheckNotUploading(pool, template->name, template->path, error))
        return NULL;
    *exact_replica = FALSE;
    if (replica_of &&
        !spPoolReplicaVersionCheck(pool, template->name, request->backing_spec,
                                   exact_replica, error))
        return NULL;
    return g_steal_pointer(&template);
}


static gboolean
checkInstance(const SpVolumeRequest *request, GError **error)
{
    if (request->format != SP_IMAGE_FORMAT_QCOW2) {
        g_set_error(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                    "instance '%s' must be a qcow2 overlay, not %s",
                    request->name, request->format_name);
        return FALSE;
    }
    if (!request->backing_spec) {
        g_set_error_literal(error, SP_ERROR, SP_ERROR_XML,
                            "<backingStore> of an instance needs a <path>");
        return FALSE;
    }
    return TRUE;
}


/* Onto one of the pool's replicas as it is (an older one: the data a
 * migrated or cloned desktop was made on), in the format it was made in. */
static gboolean
planOntoReplica(const char *replica, SpVolumePlan *plan, GError **error)
{
    g_auto(SpImageInfo) info = { 0 };

    if (!spImageInfoRead(replica, &info, error))
        return FALSE;
    plan->backing_path = g_strdup(replica);
    plan->backing_format = info.format == SP_IMAGE_FORMAT_RAW ? SP_IMAGE_FORMAT_RAW
                                                               : SP_IMAGE_FORMAT_QCOW2;
    return TRUE;
}


/* What the pool's policy backs the instance onto: the template, or its
 * replica, which is flattened for a template with a backing file. */
static gboolean
planInstance(SpPool *pool, const SpVolumeRequest *request, SpVolumePlan *plan,
             GError **error)
{
    g_autoptr(SpVolumeEntry) template = NULL;
    gboolean exact_replica = FALSE;

    if (!checkInstance(request, error) ||
        !(template = lookupTemplate(pool, request, &exact_replica, error)))
        return FALSE;
    /* The volume XML parser turns an omitted backing format into qcow2, so
     * only an explicit raw for a qcow2 template is a real contradiction. */
    if (request->backing_raw && template->format != SP_IMAGE_FORMAT_RAW) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "backing format 'raw' does not match template '%s', which is %s",
                    template->name, formatName(template->format));
        return FALSE;
    }
    if (exact_replica) {
        if (!planOntoReplica(request->backing_spec, plan, error))
            return FALSE;
    } else {
        if (!(plan->backing_path = spPoolInstanceBacking(pool, template->path, error)))
            return FALSE;
        plan->backing_format = template->format;
        if (template->backing_path && strcmp(plan->backing_path, template->path) != 0)
            plan->backing_format = SP_IMAGE_FORMAT_QCOW2;
    }
    plan->capacity = request->capacity ? request->capacity : template->capacity;
    if (plan->capacity < template->capacity) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "capacity %" G_GUINT64_FORMAT " of instance '%s' is smaller than its "
                    "template '%s' (%" G_GUINT64_FORMAT " bytes)",
                    plan->capacity, request->name, template->name, template->capacity);
        return FALSE;
    }
    return TRUE;
}


static gboolean
checkCapacity(const SpVolumeRequest *request, guint64 capacity, GError **error)
{
    guint64 limit = request->format == SP_IMAGE_FORMAT_QCOW2
        ? spQcow2MaxVirtualSize(SP_QCOW2_DEFAULT_CLUSTER_BITS) : (guint64) G_MAXINT64;

    if (!request->backing && capacity == 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "template '%s' needs a capacity", request->name);
        return FALSE;
    }
    if (capacity > limit) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "capacity %" G_GUINT64_FORMAT " of volume '%s' is larger than the %s "
                    "limit of %" G_GUINT64_FORMAT " bytes",
                    capacity, request->name, formatName(request->format), limit);
        return FALSE;
    }
    return TRUE;
}


/* Listed as being built until written: no instance backs onto a template
 * that is not there yet, and no second volume takes its name. */
static void
listPlanned(SpPool *pool, const SpVolumeRequest *request, const SpVolumePlan *plan)
{
    SpVolumeEntry entry = {
        .name = (char *) request->name,
        .path = plan->path,
        .tier = request->backing ? SP_TIER_SECONDARY : SP_TIER_PRIMARY,
        .role = request->backing ? SP_ROLE_INSTANCE : SP_ROLE_TEMPLATE,
        .format = request->format,
        .capacity = plan->capacity,
        /* an instance being written already protects what it backs onto */
        .backing_path = plan->backing_path,
        .building = TRUE,
    };

    spPoolIndexAdd(pool, &entry);
}


SpVolumePlan *
spPoolPlanVolume(SpPool *pool, const SpVolumeRequest *request, GError **error)
{
    g_autoptr(SpVolumePlan) plan = g_new0(SpVolumePlan, 1);

    if (!checkRequest(request, error) || !spPoolCheckNameFree(pool, request->name, error))
        return NULL;
    plan->capacity = request->capacity;
    if (request->backing && !planInstance(pool, request, plan, error))
        return NULL;
    if (!checkCapacity(request, plan->capacity, error))
        return NULL;
    plan->path = spPoolVolumePath(pool, request->name, request->backing);
    listPlanned(pool, request, plan);
    return g_steal_pointer(&plan);
}
