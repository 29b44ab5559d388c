/*
 * write_faults.h - disk faults for store tests: interposes pwrite and
 * writev, the calls LMDB writes its pages with (no WRITEMAP). While armed
 * (inject_errno set), every write of at least INJECT_MIN_BYTES fails with
 * that errno. Only a write holding a chunk's overflow pages is that large,
 * so metadata-only commits, and LMDB's meta pages, still go through: the
 * disk is full for chunks and has room for records, as a nearly full disk.
 *
 * Defines pwrite and writev: include it in one test program's file only,
 * and call inject_init in main before any thread writes.
 */
#ifndef LARDER_TEST_WRITE_FAULTS_H
#define LARDER_TEST_WRITE_FAULTS_H

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/uio.h>

#define INJECT_MIN_BYTES ((size_t)512 * 1024)

static _Atomic int inject_errno; /* 0: writes go through */
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);

static void inject_init(void)
{
    *(void **)&real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    *(void **)&real_writev = dlsym(RTLD_NEXT, "writev");
    if (real_pwrite == NULL || real_writev == NULL) {
        fprintf(stderr, "cannot find pwrite/writev: %s\n", dlerror());
        exit(2);
    }
}

static bool inject_now(size_t bytes)
{
    int err = atomic_load(&inject_errno);

    if (err == 0 || bytes < INJECT_MIN_BYTES)
        return false;
    errno = err;
    return true;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    return inject_now(count) ? -1 : real_pwrite(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    size_t bytes = 0;

    for (int i = 0; i < iovcnt; i++)
        bytes += iov[i].iov_len;
    return inject_now(bytes) ? -1 : real_writev(fd, iov, iovcnt);
}

#endif
