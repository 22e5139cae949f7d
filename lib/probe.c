/* SPDX-License-Identifier: MIT */
/*
 * Kernel capability probe: what the running kernel does with ring memory,
 * judged by behaviour, never by version string (distributions backport).
 *
 *   tiny NO_MMAP ring, one page per region      -EINVAL  -> unsupported (< 6.5)
 *   rings region of three virtual pages over
 *   frames A, A, B (never contiguous)             -EFAULT  -> single page (6.5 bug)
 *                                                -EINVAL  -> contiguous only (6.6-6.9)
 *                                                success  -> any memory (6.10+, 6.6.84+)
 *
 * Computed once per process; a forked child inherits the answer, which is
 * still true (same kernel).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "internal.h"

/*
 * The verdict, kept once it is sound.  A probe that ran out of file
 * descriptors (or was interrupted) says nothing about the kernel: kept, it
 * would brand the kernel "no io_uring" or "no NO_MMAP" for the process's
 * life, so it is handed out for this call only and tried again next time.
 */
static struct hugering_kernel_caps caps;
static bool caps_done;
static pthread_mutex_t caps_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread struct hugering_kernel_caps caps_transient;

/*
 * A failure of the process's resources, not an answer of the kernel's:
 * -ENOMEM too, which a 1-entry ring gets when this user's RLIMIT_MEMLOCK
 * charge is held by rings of its processes that are still being torn down
 * (Linux 6.14+ charges ring memory per user).
 */
static bool transient(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -EAGAIN || err == -EINTR ||
	       err == -ENOMEM;
}

struct probe_run {
	struct hugering_kernel_caps *c;
	int transient;		/* 0, or the -errno that spoiled the probe */
	int waited_ms;		/* spent waiting for memlock, all steps together */
};

/* How long the whole probe waits for dying rings' memlock charge. */
#define PROBE_MEMLOCK_WAIT_MS 200

static void note(struct probe_run *r, int err)
{
	if (transient(err) && !r->transient)
		r->transient = err;
}

/*
 * io_uring_setup, waiting out -ENOMEM: rings this user's processes just
 * closed (the probe's own steps among them) keep their RLIMIT_MEMLOCK charge
 * until the kernel's asynchronous teardown ends (Linux 6.14+ charges ring
 * memory per user), so any step, not only the first, can see it.  A failed
 * setup copies nothing back, so @p is retried as given.
 */
static int probe_setup(struct probe_run *r, unsigned entries, struct io_uring_params *p)
{
	for (;;) {
		int fd = hr_sys_io_uring_setup(entries, p);

		if (fd != -ENOMEM || r->waited_ms >= PROBE_MEMLOCK_WAIT_MS)
			return fd;
		usleep(5000);
		r->waited_ms += 5;
	}
}

/* A setup that succeeds is closed at once: only the verdict matters. */
static int try_setup(struct probe_run *r, unsigned entries, struct io_uring_params *p)
{
	int fd = probe_setup(r, entries, p);

	if (fd >= 0) {
		close(fd);
		return 0;
	}
	return fd;
}

/*
 * Scratch memory for the rings region: @npages virtual pages over shmem
 * frames A, A, B (the first two the same frame), then one page of SQEs.
 * 6.5 checks first page == last page (A != B: -EFAULT); 6.6.5-6.9 check
 * that each page follows the previous one (A after A: -EINVAL); 6.10+ map
 * any pages.  One page: just A.
 */
struct scratch {
	char *base;
	size_t len;
	int fd;
};

static int scratch_map(struct scratch *s, unsigned npages)
{
	void *v;

	s->len = (npages + 1) * HR_BASE_PAGE;
	s->fd = hr_sys_memfd_create("hugering-probe", MFD_CLOEXEC);
	if (s->fd < 0)
		return s->fd;
	if (hr_sys_ftruncate(s->fd, 3 * HR_BASE_PAGE))
		goto err;
	if (hr_sys_mmap(NULL, s->len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0, &v))
		goto err;
	s->base = v;
	for (unsigned i = 0; i <= npages; i++) {
		/* frame A for the first two pages, B for the last, SQEs after */
		off_t frame = i == npages ? 2 : (npages > 2 && i == npages - 1) ? 1 : 0;

		if (hr_sys_mmap(s->base + i * HR_BASE_PAGE, HR_BASE_PAGE, PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_FIXED, s->fd, frame * (off_t)HR_BASE_PAGE, &v))
			goto err_unmap;
	}
	return 0;
err_unmap:
	hr_sys_munmap(s->base, s->len);
err:
	close(s->fd);
	return -ENOMEM;
}

static void scratch_unmap(struct scratch *s)
{
	hr_sys_munmap(s->base, s->len);
	close(s->fd);
}

/* One NO_MMAP setup with a rings region of @ring_pages (aliased) pages. */
static int try_nommap(struct probe_run *r, unsigned ring_pages, unsigned cq)
{
	struct io_uring_params p;
	struct scratch s = { 0 };
	int ret = scratch_map(&s, ring_pages);

	if (ret)
		return ret;
	memset(s.base, 0, s.len);
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_NO_MMAP | IORING_SETUP_CQSIZE;
	p.cq_entries = cq;
	p.cq_off.user_addr = (uintptr_t)s.base;
	p.sq_off.user_addr = (uintptr_t)(s.base + ring_pages * HR_BASE_PAGE);
	ret = try_setup(r, 1, &p);
	scratch_unmap(&s);
	return ret;
}

static int probe_nommap(struct probe_run *r)
{
	/* cq = 2: H + 32 + 4 bytes, one page on every kernel. */
	int ret = try_nommap(r, 1, 2);

	note(r, ret);
	if (ret == -EINVAL)
		return HUGERING_NOMMAP_UNSUPPORTED;
	if (ret)
		return HUGERING_NOMMAP_UNSUPPORTED;
	/* cq = 512: 8 KiB + header, three pages: frames A, A, B. */
	ret = try_nommap(r, 3, 512);
	note(r, ret);
	if (!ret)
		return HUGERING_NOMMAP_ANY;
	if (ret == -EFAULT)
		return HUGERING_NOMMAP_SINGLE_PAGE;
	return HUGERING_NOMMAP_CONTIG;
}

static int probe_resize(struct probe_run *r)
{
	struct io_uring_params p;
	int fd, ret;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
	fd = probe_setup(r, 1, &p);
	note(r, fd);
	if (fd < 0)
		return 0;
	memset(&p, 0, sizeof(p));
	p.sq_entries = 1;
	p.cq_entries = 4;
	p.flags = IORING_SETUP_CQSIZE;
	ret = hr_sys_io_uring_register(fd, IORING_REGISTER_RESIZE_RINGS, &p, 1);
	close(fd);
	return ret == 0;
}

static void probe_all_here(void *arg)
{
	struct probe_run *r = arg;
	struct hugering_kernel_caps *c = r->c;
	struct io_uring_params p;
	struct utsname u;
	int fd, ret;

	memset(c, 0, sizeof(*c));
	if (!uname(&u))
		hr_copy_str(c->release, sizeof(c->release), u.release);
	ret = hr_pfn_visible();
	note(r, ret);
	c->pfn_visible = ret > 0;
	memset(&p, 0, sizeof(p));
	fd = probe_setup(r, 1, &p);
	if (fd < 0) {
		/* -EPERM: kernel.io_uring_disabled; -ENOSYS: not built in. */
		note(r, fd);
		c->io_uring = fd;
		c->nommap = HUGERING_NOMMAP_UNSUPPORTED;
		return;
	}
	close(fd);
	c->features = p.features;
	c->ring_header = hr_ring_header();
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_NO_SQARRAY;
	ret = try_setup(r, 1, &p);
	note(r, ret);
	c->no_sqarray = ret == 0;
	c->nommap = probe_nommap(r);
	c->resize = probe_resize(r);
	/* Spoiled: io_uring < 0 says why, so no caller builds on the rest. */
	if (r->transient)
		c->io_uring = r->transient;
}

/*
 * Every scratch ring is closed on a helper thread: closing a ring leaves
 * teardown work on the threads that used it (hr_run_on_helper).  A sound
 * verdict is kept for the process; a spoiled one (see caps_transient) only
 * for this thread's call.
 */
const struct hugering_kernel_caps *hr_caps(void)
{
	struct probe_run r = { &caps_transient, 0, 0 };

	if (__atomic_load_n(&caps_done, __ATOMIC_ACQUIRE))
		return &caps;
	pthread_mutex_lock(&caps_lock);
	if (!caps_done) {
		hr_run_on_helper(probe_all_here, &r);
		if (!r.transient) {
			caps = caps_transient;
			__atomic_store_n(&caps_done, true, __ATOMIC_RELEASE);
		}
	}
	pthread_mutex_unlock(&caps_lock);
	return caps_done ? &caps : &caps_transient;
}

static int probe_kernel(struct hugering_kernel_caps *out)
{
	const struct hugering_kernel_caps *c;

	if (!out)
		return -EINVAL;
	c = hr_caps();
	*out = *c;
	if (transient(c->io_uring)) {
		hr_set_error("cannot probe the kernel's io_uring: %s", strerror(-c->io_uring));
		return c->io_uring;
	}
	return 0;
}

int hugering_probe_kernel(struct hugering_kernel_caps *out)
{
	return HR_PUBLIC(probe_kernel(out));
}


const char *hugering_nommap_name(int nommap)
{
	switch (nommap) {
	case HUGERING_NOMMAP_SINGLE_PAGE: return "single_page";
	case HUGERING_NOMMAP_CONTIG: return "contiguous";
	case HUGERING_NOMMAP_ANY: return "any";
	default: return "unsupported";
	}
}
