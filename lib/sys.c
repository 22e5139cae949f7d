/* SPDX-License-Identifier: MIT */
/*
 * The platform layer, the bottom of the stack: every system call of the
 * library whose failure matters, each returning -errno (never setting errno
 * for the caller to read).  Nothing above calls the kernel for these
 * directly, so tests can link tests/fault/sys-fault.c in place of this file
 * and fail any call (a link-time seam: the shipped library has no hook).
 *
 * liburing's own system calls (io_uring_queue_init_mem and friends) are not
 * ours and do not pass through here.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

int hr_sys_memfd_create(const char *name, unsigned flags)
{
	int fd = memfd_create(name, flags);

	return fd < 0 ? -errno : fd;
}

int hr_sys_ftruncate(int fd, off_t len)
{
	return ftruncate(fd, len) ? -errno : 0;
}

int hr_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off,
		void **out)
{
	void *p = mmap(addr, len, prot, flags, fd, off);

	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

int hr_sys_munmap(void *addr, size_t len)
{
	return munmap(addr, len) ? -errno : 0;
}

int hr_sys_fallocate(int fd, int mode, off_t off, off_t len)
{
	return fallocate(fd, mode, off, len) ? -errno : 0;
}

int hr_sys_madvise(void *addr, size_t len, int advice)
{
	return madvise(addr, len, advice) ? -errno : 0;
}

int hr_sys_mbind(void *addr, size_t len, int mode, const unsigned long *mask,
		 unsigned long maxnode, unsigned flags)
{
	return syscall(SYS_mbind, addr, len, mode, mask, maxnode, flags) ? -errno : 0;
}

int hr_sys_move_pages(unsigned long n, void *const *addrs, int *nodes)
{
	/* No target nodes: only reports where the pages are. */
	return syscall(SYS_move_pages, 0, n, addrs, NULL, nodes, 0) < 0 ? -errno : 0;
}

int hr_sys_io_uring_setup(unsigned entries, struct io_uring_params *p)
{
	long fd = syscall(__NR_io_uring_setup, entries, p);

	return fd < 0 ? -errno : (int)fd;
}

int hr_sys_io_uring_register(int fd, unsigned op, void *arg, unsigned nr)
{
	long ret = syscall(__NR_io_uring_register, fd, op, arg, nr);

	return ret < 0 ? -errno : (int)ret;
}

ssize_t hr_sys_pread(int fd, void *buf, size_t len, off_t off)
{
	ssize_t got = pread(fd, buf, len, off);

	return got < 0 ? -errno : got;
}

long hr_sys_ioctl(int fd, unsigned long req, void *arg)
{
	long ret = ioctl(fd, req, arg);

	return ret < 0 ? -errno : ret;
}
