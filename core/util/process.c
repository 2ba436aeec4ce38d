/*
 * process.c: run a helper program and judge it by its exit status
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "stormpool/error.h"
#include "util/process.h"

/* The most useful text about a failed run; see spProcessRun. The
 * streams are stripped in copies: the caller still gets stdout as is. */
static void
setFailed(GError **error, const char *err, const char *out, const GError *wait_error)
{
    g_autofree char *said = g_strstrip(g_strdup(err ? err : ""));

    if (!*said && out) {
        g_free(said);
        said = g_strstrip(g_strdup(out));
    }
    g_set_error(error, SP_ERROR, SP_ERROR_IO, "%s", *said ? said : wait_error->message);
}


gboolean
spProcessRun(const char * const *argv, char **out, GError **error)
{
    GSpawnFlags flags = G_SPAWN_SEARCH_PATH;
    g_autofree char *captured = NULL;
    g_autofree char *err = NULL;
    g_autoptr(GError) wait_error = NULL;
    gint status = 0;

    g_return_val_if_fail(argv && argv[0], FALSE);
    if (out)
        *out = NULL;
    else
        flags |= G_SPAWN_STDOUT_TO_DEV_NULL;
    if (!g_spawn_sync(NULL, (char **) argv, NULL, flags, NULL, NULL,
                      out ? &captured : NULL, &err, &status, error))
        return FALSE;
    if (!g_spawn_check_wait_status(status, &wait_error)) {
        setFailed(error, err, captured, wait_error);
        if (out)
            *out = g_steal_pointer(&captured);
        return FALSE;
    }
    if (out)
        *out = g_steal_pointer(&captured);
    return TRUE;
}
