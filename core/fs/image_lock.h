/*
 * image_lock.h: is a disk image open in QEMU (or qemu-img, qemu-io, ...)?
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Set *@in_use when another open file description holds a lock on the
 * bytes QEMU's image locking uses (offsets 100..299 of the image file).
 * Every QEMU process holds such locks on every image it has open, the
 * backing files of its disks included, so this detects a running guest
 * without asking libvirt's domain drivers, and also a QEMU started by
 * hand. Never takes a lock itself. */
gboolean spImageInUse(const char *path, gboolean *in_use, GError **error);

/* Like spImageInUse, but only for processes that may change the image's
 * data or size (QEMU's write and resize permissions): readers, such as the
 * guests whose disks back onto a template, do not count. */
gboolean spImageHasWriter(const char *path, gboolean *has_writer, GError **error);

/* Take QEMU's lock bytes of @path exclusively and return the descriptor
 * that holds them (close it to release). Fails with SP_ERROR_IN_USE when a
 * QEMU process has the image open, and while the lock is held no QEMU can
 * open it, so a check and the change it guards cannot be raced. */
int spImageLockExclusive(const char *path, GError **error);

/* Hold @path as QEMU holds a backing file: readers may come and go, but
 * no QEMU (or qemu-img) may open it for writing or resizing until the
 * returned descriptor is closed. Fails with SP_ERROR_IN_USE when one
 * already has. Image locks only bind processes that honour them. */
int spImageLockReader(const char *path, GError **error);

G_END_DECLS
