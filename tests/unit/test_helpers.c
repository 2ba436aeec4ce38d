/*
 * test_helpers.c: shared plumbing of the unit tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stormpool/pool.h"
#include "test_helpers.h"

char *
spTestTempDir(void)
{
    g_autoptr(GError) error = NULL;
    char *dir = g_dir_make_tmp("stormpool-test-XXXXXX", &error);

    g_assert_no_error(error);
    return dir;
}


static void
removeTree(const char *path)
{
    g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);
    const char *name;

    if (dir) {
        while ((name = g_dir_read_name(dir))) {
            g_autofree char *child = g_build_filename(path, name, NULL);
            if (g_file_test(child, G_FILE_TEST_IS_DIR) &&
                !g_file_test(child, G_FILE_TEST_IS_SYMLINK)) {
                g_chmod(child, 0700);
                removeTree(child);
            } else {
                g_unlink(child);
            }
        }
    }
    g_rmdir(path);
}


void
spTestTempDirFree(char *dir)
{
    if (!dir)
        return;
    removeTree(dir);
    g_free(dir);
}


int
spTestRun(const char * const *argv, char **out, char **err)
{
    g_autoptr(GError) error = NULL;
    int status = -1;

    if (!g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH,
                      NULL, NULL, out, err, &status, &error)) {
        g_test_message("cannot run %s: %s", argv[0], error->message);
        return -1;
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return -1;
}


gboolean
spTestHaveQemuImg(void)
{
    g_autofree char *path = g_find_program_in_path("qemu-img");

    return path != NULL;
}


static const char *
jsonValue(const char *json, const char *key)
{
    g_autofree char *needle = g_strdup_printf("\"%s\":", key);
    const char *p = strstr(json, needle);

    if (!p)
        return NULL;
    p += strlen(needle);
    while (*p == ' ' || *p == '\n' || *p == '\t')
        p++;
    return p;
}


gboolean
spTestJsonInt(const char *json, const char *key, gint64 *value)
{
    const char *p = jsonValue(json, key);
    char *end = NULL;

    if (!p)
        return FALSE;
    *value = g_ascii_strtoll(p, &end, 10);
    return end != p;
}


gboolean
spTestJsonBool(const char *json, const char *key, gboolean *value)
{
    const char *p = jsonValue(json, key);

    if (!p)
        return FALSE;
    if (g_str_has_prefix(p, "true"))
        *value = TRUE;
    else if (g_str_has_prefix(p, "false"))
        *value = FALSE;
    else
        return FALSE;
    return TRUE;
}


char *
spTestJsonString(const char *json, const char *key)
{
    const char *p = jsonValue(json, key);
    GString *s;

    if (!p || *p != '"')
        return NULL;
    s = g_string_new(NULL);
    for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1])
            p++;
        g_string_append_c(s, *p);
    }
    return g_string_free(s, FALSE);
}


void
spTestWriteAt(const char *path, guint64 offset, const void *data, gsize len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, data, len, offset), ==, (gssize) len);
    g_assert_cmpint(close(fd), ==, 0);
}


void
spTestCaptureLog(const gchar *domain G_GNUC_UNUSED, GLogLevelFlags level,
                 const gchar *message, gpointer log)
{
    /* Debug messages trace the daemon's work; tests compare what admins read. */
    if (level & G_LOG_LEVEL_DEBUG)
        return;
    g_string_append_printf(log, "%s: %s\n",
                           level & G_LOG_LEVEL_CRITICAL ? "error" :
                           level & G_LOG_LEVEL_WARNING ? "warning" : "info", message);
}


void
spTestPoolSetUp(SpTestPoolFixture *f, gconstpointer data G_GNUC_UNUSED)
{
    f->root = spTestTempDir();
    f->primary = g_build_filename(f->root, "hdd", NULL);
    f->secondary = g_build_filename(f->root, "ssd", NULL);
    f->ram = g_build_filename(f->root, "ram", "lab", NULL);
    g_assert_cmpint(mkdir(f->primary, 0755), ==, 0);
    g_assert_cmpint(mkdir(f->secondary, 0755), ==, 0);
    f->log = g_string_new(NULL);
    g_log_set_handler("stormpool", G_LOG_LEVEL_MASK, spTestCaptureLog, f->log);
}


void
spTestPoolTearDown(SpTestPoolFixture *f, gconstpointer data G_GNUC_UNUSED)
{
    g_log_set_handler("stormpool", G_LOG_LEVEL_MASK, g_log_default_handler, NULL);
    g_string_free(f->log, TRUE);
    spTestTempDirFree(f->root);
    g_free(f->primary);
    g_free(f->secondary);
    g_free(f->ram);
}


SpPool *
spTestPoolNew(SpTestPoolFixture *f, SpReplicaPolicy policy)
{
    SpPool *pool = spPoolNew(f->primary, f->secondary, policy, FALSE);
    g_autoptr(GError) err = NULL;

    g_assert_true(spPoolStart(pool, &err));
    g_assert_no_error(err);
    return pool;
}


/* ---- volumes of a test pool ----------------------------------------------- */

void
spTestCreateTemplate(SpPool *pool, const char *name, guint64 capacity)
{
    g_autofree char *path = spPoolVolumePath(pool, name, FALSE);
    SpNewVolume vol = { .name = name, .path = path, .format = SP_IMAGE_FORMAT_QCOW2,
                        .capacity = capacity, .mode = 0644,
                        .uid = (uid_t) -1, .gid = (gid_t) -1 };
    g_autoptr(GError) err = NULL;

    g_assert_true(spPoolCreateVolume(pool, &vol, &err));
    g_assert_no_error(err);
}


/* The backing path of the new instance, as the module would pass it. */
char *
spTestCreateInstance(SpPool *pool, const char *name, const char *template)
{
    g_autofree char *template_path = spPoolVolumePath(pool, template, FALSE);
    g_autofree char *path = spPoolVolumePath(pool, name, TRUE);
    g_autoptr(GError) err = NULL;
    char *backing = spPoolInstanceBacking(pool, template_path, &err);
    SpNewVolume vol = { .name = name, .path = path, .format = SP_IMAGE_FORMAT_QCOW2,
                        .capacity = 4 * 1024 * 1024, .backing_path = backing,
                        .backing_format = "qcow2", .mode = 0600,
                        .uid = (uid_t) -1, .gid = (gid_t) -1 };

    g_assert_no_error(err);
    g_assert_true(spPoolCreateVolume(pool, &vol, &err));
    g_assert_no_error(err);
    return backing;
}


GPtrArray *
spTestRefresh(SpPool *pool)
{
    g_autoptr(GError) err = NULL;
    SpTierUsage usage = { 0 };
    GPtrArray *volumes = spPoolRefresh(pool, &usage, &err);

    spPoolWaitIdle(pool);

    g_assert_no_error(err);
    g_assert_nonnull(volumes);
    g_assert_cmpuint(usage.capacity, >, 0);
    return volumes;
}
