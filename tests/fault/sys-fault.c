/* SPDX-License-Identifier: MIT */
/*
 * A fault seam for lib/sys.c: the same hr_sys_* functions, forwarding to the
 * real system calls but failing the Nth call with an errno the test chooses.
 * Linked only into build/tests/hugering-fault (from the library's objects
 * without sys.o), never into the shipped library.
 *
 * munmap is counted and its sites listed but never failed: the library
 * ignores its result by design (it only tears down), and a mapping that
 * really stayed would be a leak of the seam's making, not the library's.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../../lib/internal.h"
#include "sys-fault.h"

#define MAX_SITES 128
#define MAX_NAMES 4096

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long calls, target, last_site = -1;
static int target_err;
static bool fired;
static struct fault_site sites[MAX_SITES];
static int nsites;
static const char *names[MAX_NAMES];

void fault_arm(long n, int err)
{
	pthread_mutex_lock(&lock);
	calls = 0;
	target = n;
	target_err = err;
	fired = false;
	last_site = -1;
	memset(names, 0, sizeof(names));
	pthread_mutex_unlock(&lock);
}

void fault_disarm(void)
{
	pthread_mutex_lock(&lock);
	target = 0;
	pthread_mutex_unlock(&lock);
}

long fault_calls(void)
{
	long n;

	pthread_mutex_lock(&lock);
	n = calls;
	pthread_mutex_unlock(&lock);
	return n;
}

const char *fault_name(long n)
{
	return n >= 1 && n <= MAX_NAMES && names[n - 1] ? names[n - 1] : "";
}

bool fault_fired(void)
{
	return fired;
}

bool fault_injectable(const char *name)
{
	return strcmp(name, "munmap") != 0;
}

const struct fault_site *fault_sites(int *n)
{
	*n = nsites;
	return sites;
}

void fault_reset_sites(void)
{
	pthread_mutex_lock(&lock);
	memset(sites, 0, sizeof(sites));
	nsites = 0;
	last_site = -1;
	pthread_mutex_unlock(&lock);
}

void fault_note_outcome(const char *what)
{
	pthread_mutex_lock(&lock);
	if (last_site >= 0) {
		struct fault_site *s = &sites[last_site];
		size_t used = strlen(s->outcomes);

		if (!strstr(s->outcomes, what) && used + strlen(what) + 3 < sizeof(s->outcomes))
			snprintf(s->outcomes + used, sizeof(s->outcomes) - used, "%s%s",
				 used ? "; " : "", what);
	}
	pthread_mutex_unlock(&lock);
}

static struct fault_site *site_of(const char *name, void *caller)
{
	for (int i = 0; i < nsites; i++)
		if (sites[i].caller == caller && !strcmp(sites[i].name, name))
			return &sites[i];
	if (nsites == MAX_SITES)
		return NULL;
	sites[nsites].name = name;
	sites[nsites].caller = caller;
	return &sites[nsites++];
}

/* Count one call; the -errno to fail it with, or 0 to make it for real. */
static int hit(const char *name, void *caller)
{
	struct fault_site *s;
	int err = 0;

	pthread_mutex_lock(&lock);
	calls++;
	if (calls <= MAX_NAMES)
		names[calls - 1] = name;
	s = site_of(name, caller);
	if (s)
		s->calls++;
	if (calls == target && fault_injectable(name)) {
		err = -target_err;
		fired = true;
		if (s) {
			s->failed++;
			last_site = s - sites;
		}
	}
	pthread_mutex_unlock(&lock);
	return err;
}

#define HIT(name)							\
	do {								\
		int e_ = hit(name, __builtin_return_address(0));	\
		if (e_)							\
			return e_;					\
	} while (0)

int hr_sys_memfd_create(const char *name, unsigned flags)
{
	HIT("memfd_create");
	int fd = memfd_create(name, flags);

	return fd < 0 ? -errno : fd;
}

int hr_sys_ftruncate(int fd, off_t len)
{
	HIT("ftruncate");
	return ftruncate(fd, len) ? -errno : 0;
}

int hr_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off,
		void **out)
{
	HIT("mmap");
	void *p = mmap(addr, len, prot, flags, fd, off);

	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

int hr_sys_munmap(void *addr, size_t len)
{
	HIT("munmap");
	return munmap(addr, len) ? -errno : 0;
}

int hr_sys_fallocate(int fd, int mode, off_t off, off_t len)
{
	HIT("fallocate");
	return fallocate(fd, mode, off, len) ? -errno : 0;
}

int hr_sys_madvise(void *addr, size_t len, int advice)
{
	HIT("madvise");
	return madvise(addr, len, advice) ? -errno : 0;
}

int hr_sys_mbind(void *addr, size_t len, int mode, const unsigned long *mask,
		 unsigned long maxnode, unsigned flags)
{
	HIT("mbind");
	return syscall(SYS_mbind, addr, len, mode, mask, maxnode, flags) ? -errno : 0;
}

int hr_sys_move_pages(unsigned long n, void *const *addrs, int *nodes)
{
	HIT("move_pages");
	return syscall(SYS_move_pages, 0, n, addrs, NULL, nodes, 0) < 0 ? -errno : 0;
}

int hr_sys_io_uring_setup(unsigned entries, struct io_uring_params *p)
{
	HIT("io_uring_setup");
	long fd = syscall(__NR_io_uring_setup, entries, p);

	return fd < 0 ? -errno : (int)fd;
}

int hr_sys_io_uring_register(int fd, unsigned op, void *arg, unsigned nr)
{
	HIT("io_uring_register");
	long ret = syscall(__NR_io_uring_register, fd, op, arg, nr);

	return ret < 0 ? -errno : (int)ret;
}

ssize_t hr_sys_pread(int fd, void *buf, size_t len, off_t off)
{
	HIT("pread(pagemap)");
	ssize_t got = pread(fd, buf, len, off);

	return got < 0 ? -errno : got;
}

long hr_sys_ioctl(int fd, unsigned long req, void *arg)
{
	HIT(_IOC_NR(req) == 17 ? "ioctl(PROCMAP_QUERY)" : "ioctl(PAGEMAP_SCAN)");
	long ret = ioctl(fd, req, arg);

	return ret < 0 ? -errno : ret;
}
