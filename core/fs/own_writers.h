/*
 * own_writers.h: does this process have a file open for writing?
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Set *@writing when one of this process's descriptors is open for
 * writing on the file @path names (the same inode, whatever the path).
 * libvirt's vol-upload streams into a volume from a descriptor of the
 * daemon itself, and holds no image lock while it does: this is how the
 * daemon sees that such an upload is still going on. */
gboolean spProcessWritesFile(const char *path, gboolean *writing, GError **error);

G_END_DECLS
