/*
 * full_io.h: reads and writes that move every byte asked for
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Read @len bytes at @offset of @fd into @buf: retried when a signal
 * interrupts the call and continued after short reads. Returns how many
 * bytes were read, which is less than @len only when the file ended
 * first: what that means (a damaged image, a truncate under us) is the
 * caller's to say. Returns -1 when a read fails: @error is then set as by
 * spErrorSetErrno, with the message @fmt and the errno kept. */
gssize spFullPread(int fd, void *buf, gsize len, guint64 offset,
                   GError **error, const char *fmt, ...) G_GNUC_PRINTF(6, 7);

/* spFullPread at the file position, for pipes and sockets too. */
gssize spFullRead(int fd, void *buf, gsize len,
                  GError **error, const char *fmt, ...) G_GNUC_PRINTF(5, 6);

/* Write all @len bytes of @buf at @offset of @fd, retried and continued
 * like spFullPread. A write that makes no progress fails with EIO rather
 * than looping forever. On failure @error is set from errno with the
 * message @fmt. */
gboolean spFullPwrite(int fd, const void *buf, gsize len, guint64 offset,
                      GError **error, const char *fmt, ...) G_GNUC_PRINTF(6, 7);

/* spFullPwrite at the file position, for pipes and sockets too. */
gboolean spFullWrite(int fd, const void *buf, gsize len,
                     GError **error, const char *fmt, ...) G_GNUC_PRINTF(5, 6);

G_END_DECLS
