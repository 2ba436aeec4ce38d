/*
 * volume_name.c: which volume names a stormpool pool accepts
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>

#include "stormpool/error.h"
#include "fs/volume_name.h"

gboolean
spVolumeNameValidate(const char *name, GError **error)
{
    size_t len = name ? strlen(name) : 0;
    const char *p;

    if (len == 0) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "volume name must not be empty");
        return FALSE;
    }
    if (len > SP_VOLUME_NAME_MAX) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "volume name is %zu bytes long, the limit is %d",
                    len, SP_VOLUME_NAME_MAX);
        return FALSE;
    }
    if (strchr(name, '/')) {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "volume name '%s' must not contain '/'", name);
        return FALSE;
    }
    /* Hidden names are reserved: they would also cover '.', '..' and the
     * pool's own temporary files. */
    if (name[0] == '.') {
        g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                    "volume name '%s' must not start with '.'", name);
        return FALSE;
    }
    for (p = name; *p; p++) {
        if ((unsigned char) *p < 0x20 || *p == 0x7f) {
            g_set_error(error, SP_ERROR, SP_ERROR_INVALID_ARG,
                        "volume name must not contain control characters");
            return FALSE;
        }
    }
    return TRUE;
}
