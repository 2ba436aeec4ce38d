/*
 * test_helpers.h: shared plumbing of the unit tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

#include "stormpool/pool.h"

/* A fresh directory under $TMPDIR, removed by spTestTempDirFree. */
char *spTestTempDir(void);
void spTestTempDirFree(char *dir);

/* Run @argv (NULL-terminated), return its exit status; its standard output
 * is stored in @out and its standard error in @err when they are non-NULL. */
int spTestRun(const char * const *argv, char **out, char **err);

/* Whether qemu-img is available; tests that need it as an oracle call
 * g_test_skip() when it is not (make check installs it). */
gboolean spTestHaveQemuImg(void);

/* Minimal extraction from `qemu-img info --output=json`: the first value
 * of @key, at any depth. FALSE / NULL when the key is absent. */
gboolean spTestJsonInt(const char *json, const char *key, gint64 *value);
char *spTestJsonString(const char *json, const char *key);
gboolean spTestJsonBool(const char *json, const char *key, gboolean *value);

/* Write @len bytes of @data at @offset of @path (creating it). */
void spTestWriteAt(const char *path, guint64 offset, const void *data, gsize len);

/* A GLogFunc for g_log_set_handler(): appends each message to the GString
 * @log as "error: ...", "warning: ..." or "info: ...", one a line, so a
 * test compares what the core logged as a whole. */
void spTestCaptureLog(const gchar *domain, GLogLevelFlags level,
                      const gchar *message, gpointer log);

/* The fixture of the tests of SpPool: the pool's two tiers made in a
 * fresh temporary directory, a RAM tier's path, and what the core logs
 * meanwhile (spTestCaptureLog). */
typedef struct {
    char *root;
    char *primary;      /* ROOT/hdd */
    char *secondary;    /* ROOT/ssd */
    char *ram;          /* ROOT/ram/lab, not made: pool-start makes it */
    GString *log;       /* what the core logged, one message a line */
} SpTestPoolFixture;

void spTestPoolSetUp(SpTestPoolFixture *f, gconstpointer data);
void spTestPoolTearDown(SpTestPoolFixture *f, gconstpointer data);

/* A started pool on the fixture's tiers, without a RAM tier. */
SpPool *spTestPoolNew(SpTestPoolFixture *f, SpReplicaPolicy policy);

/* A qcow2 template @name of @capacity bytes, made by the pool. */
void spTestCreateTemplate(SpPool *pool, const char *name, guint64 capacity);

/* An instance @name of the template @template, made by the pool; returns
 * its backing path, as the module would pass it. */
char *spTestCreateInstance(SpPool *pool, const char *name, const char *template);

/* Refresh the pool and wait for its background work; the volumes. */
GPtrArray *spTestRefresh(SpPool *pool);
