/*
 * stormpool_module.h: what the files of the stormpool backend module share
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "internal.h"
#include "storage_backend.h"
#include "virstorageobj.h"

#include "stormpool/header_cache.h"
#include "stormpool/image_header.h"

/* storage_backend_stormpool.c: errors, tiers, volume metadata, status */

/* Report @err as a libvirt error of the matching kind; returns -1. */
int stormpoolReportError(const GError *err);

const char *stormpoolPrimary(virStoragePoolObj *pool);
const char *stormpoolSecondary(virStoragePoolObj *pool);

bool stormpoolVolIsInstance(virStoragePoolObj *pool,
                            virStorageVolDef *vol);

/* The name of the template behind @backing_path (the template itself or
 * one of its replicas), or NULL when it is neither. */
char *stormpoolBackingTemplateName(virStoragePoolObj *pool,
                                   const char *backing_path);

/* qemu-img, for what converts or moves data; never for new images. */
int stormpoolQemuImgConvert(const char *src, const char *src_format,
                            const char *dst, const char *dst_format);
int stormpoolQemuImgResize(const char *path, const char *format,
                           unsigned long long capacity);

/* The daemon-wide cache of the headers refresh has read. */
SpHeaderCache *stormpoolHeaderCache(void);

int stormpoolVolUpdateFromFile(virStorageVolDef *vol,
                               int dirfd,
                               const char *dir,
                               SpImageInfo *info);

int stormpoolStartPool(virStoragePoolObj *pool);

/* Orders changes of the namespace's live status, which volume builds make
 * without the pool lock, with refresh and formatting. */
void stormpoolStatusLock(void);
void stormpoolStatusUnlock(void);

/* stormpool_refresh.c */

int stormpoolRefreshPool(virStoragePoolObj *pool);

/* Whether @replica_path is the replica that prepare='eager' keeps ready. */
bool stormpoolReplicaWanted(virStoragePoolObj *pool,
                            const char *replica_path);

/* The pool itself changed the template at @path (allowed when nothing
 * depends on it): the next refresh must not report it as changed behind
 * libvirt's back. */
void stormpoolForgetTemplateStamp(virStoragePoolObj *pool,
                                  const char *path);

/* Whether garbage collection may remove the replica at @path. */
bool stormpoolReplicaUnused(virStoragePoolObj *pool,
                            const char *path);

void stormpoolNoteReplicaUse(virStoragePoolObj *pool,
                             const char *backing_path,
                             int delta);

/* stormpool_uploads.c */

/* vol-upload is about to set up a stream into @path, and has (@ok) or
 * has not. */
void stormpoolUploadOpening(const char *path);
void stormpoolUploadOpened(const char *path, bool ok);

/* Whether an upload into @path is still being written. */
bool stormpoolTemplateUploading(const char *path);

/* stormpool_volumes.c: the volume callbacks */

int stormpoolCreateVol(virStoragePoolObj *pool, virStorageVolDef *vol);
int stormpoolBuildVol(virStoragePoolObj *pool, virStorageVolDef *vol,
                      unsigned int flags);
int stormpoolBuildVolFrom(virStoragePoolObj *pool, virStorageVolDef *vol,
                          virStorageVolDef *inputvol, unsigned int flags);
int stormpoolRefreshVol(virStoragePoolObj *pool, virStorageVolDef *vol);
int stormpoolDeleteVol(virStoragePoolObj *pool, virStorageVolDef *vol,
                       unsigned int flags);
int stormpoolWipeVol(virStoragePoolObj *pool, virStorageVolDef *vol,
                     unsigned int algorithm, unsigned int flags);
int stormpoolResizeVol(virStoragePoolObj *pool, virStorageVolDef *vol,
                       unsigned long long capacity, unsigned int flags);
int stormpoolUploadVol(virStoragePoolObj *pool, virStorageVolDef *vol,
                       virStreamPtr stream, unsigned long long offset,
                       unsigned long long len, unsigned int flags);
