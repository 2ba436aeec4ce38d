/*
 * process.h: run a helper program and judge it by its exit status
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Run @argv (NULL-terminated; argv[0] is looked up in PATH unless it
 * holds a '/') and wait for it. Succeeds when it exits with status 0:
 * what it prints never decides, since tools print warnings on success.
 *
 * With @out, its standard output is stored there (also on failure, or
 * NULL if it could not start); without, it goes to /dev/null. Its
 * standard error is collected for the message.
 *
 * When it cannot be started, @error is glib's G_SPAWN_ERROR, so callers
 * can tell "not there" (G_SPAWN_ERROR_NOENT) from "failed". When it
 * fails, @error is SP_ERROR_IO and its message is what the program said:
 * its standard error, else its standard output if captured (qemu-io
 * reports there), else how it ended ("Child process exited with code 1"),
 * stripped of surrounding white space. */
gboolean spProcessRun(const char * const *argv, char **out, GError **error);

G_END_DECLS
