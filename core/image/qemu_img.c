/*
 * qemu_img.c: qemu-img, for what converts or moves data
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "stormpool/error.h"
#include "util/process.h"
#include "image/qemu_img.h"

static gboolean
runQemuImg(const char * const *args, GError **error)
{
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) local = NULL;

    if (!qemu_img) {
        g_set_error(error, SP_ERROR, SP_ERROR_UNSUPPORTED,
                    "qemu-img is needed for this operation but was not found");
        return FALSE;
    }
    g_ptr_array_add(argv, qemu_img);
    for (; *args; args++)
        g_ptr_array_add(argv, (gpointer) *args);
    g_ptr_array_add(argv, NULL);
    if (spProcessRun((const char * const *) argv->pdata, NULL, &local))
        return TRUE;
    if (local->domain == G_SPAWN_ERROR)
        g_set_error(error, SP_ERROR, SP_ERROR_IO, "cannot run qemu-img: %s", local->message);
    else
        g_set_error(error, SP_ERROR, SP_ERROR_IO, "qemu-img %s failed: %s",
                    (const char *) g_ptr_array_index(argv, 1), local->message);
    return FALSE;
}


gboolean
spQemuImgConvert(const char *src, const char *src_format,
                 const char *dst, const char *dst_format, GError **error)
{
    const char *args[] = { "convert", "-q", "-f", src_format, "-O", dst_format,
                           src, dst, NULL };

    return runQemuImg(args, error);
}


gboolean
spQemuImgResize(const char *path, const char *format, guint64 capacity, GError **error)
{
    g_autofree char *size = g_strdup_printf("%" G_GUINT64_FORMAT, capacity);
    const char *args[] = { "resize", "-q", "-f", format, path, size, NULL };

    return runQemuImg(args, error);
}


/* The stream of an upload that broke off leaves a file whose header is
 * whole and whose clusters are not: qemu-img check counts every cluster
 * the tables name beyond the end of the file. Any fault it finds (leaked
 * clusters too, which 'qemu-img check -r leaks' repairs) is refused, so
 * that its long report stays out of the message. */
gboolean
spQemuImgCheck(const char *path, GError **error)
{
    const char *args[] = { "check", "-q", "-f", "qcow2", path, NULL };
    g_autoptr(GError) local = NULL;

    if (runQemuImg(args, &local))
        return TRUE;
    g_set_error(error, SP_ERROR, SP_ERROR_BAD_IMAGE,
                "'%s' is not a whole qcow2 image: qemu-img check finds faults in it "
                "(a stream that broke off, or a damaged image)", path);
    return FALSE;
}
