/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers.h"
#include "persona.h"

#define PAGE 4096UL
#define PA(x) (((x) + PAGE - 1) & ~(PAGE - 1))

static enum persona active;
static int listener = -1;
static atomic_uint refused, passed, interrupted;

static _Atomic size_t witness_bytes;	/* set by the test thread, read by the supervisor */
static atomic_int header_zero = -1;

unsigned persona_refused(void) { return refused; }
void persona_witness_header(size_t bytes)
{
	header_zero = -1;
	witness_bytes = bytes;
}
int persona_header_zero(void) { return header_zero; }
unsigned persona_passed(void) { return passed; }
unsigned persona_interrupted(void) { return interrupted; }

static unsigned pow2(unsigned v)
{
	unsigned r = 1;

	while (r < v)
		r <<= 1;
	return r;
}

/* The two region sizes that kernel would pin, with its header size. */
static void regions(unsigned entries, const struct io_uring_params *p, unsigned header,
		    size_t *sqes, size_t *rings)
{
	unsigned sq = pow2(entries > 32768 ? 32768 : entries);
	unsigned cq = 2 * sq;
	size_t r;

	if (p->flags & IORING_SETUP_CQSIZE)
		cq = pow2(p->cq_entries > 65536 ? 65536 : p->cq_entries);
	r = header + 16UL * cq;
	if (p->flags & IORING_SETUP_CQE32)
		r *= 2;
	r = (r + 63) & ~63UL;
	if (!(p->flags & IORING_SETUP_NO_SQARRAY))
		r += 4UL * sq;
	*rings = PA(r);
	*sqes = PA((size_t)sq * ((p->flags & IORING_SETUP_SQE128) ? 128 : 64));
}

/* KernelPageSize of the VMA holding @a, and whether [a, a+len) stays in it. */
static size_t vma_page_size(uintptr_t a, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	unsigned long lo, hi, kb;
	bool in = false;
	size_t ps = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
			if (in)
				break;
			in = a >= lo && a + len <= hi;
		} else if (in && sscanf(line, "KernelPageSize: %lu kB", &kb) == 1) {
			ps = kb * 1024;
		}
	}
	fclose(f);
	return ps;
}

/* What 6.6.5-6.9 checks: every page follows the previous one physically. */
static bool phys_contiguous(uintptr_t a, size_t len)
{
	size_t ps;

	if (len <= PAGE)
		return true;
	if (th_pfn_visible())
		return th_runs((void *)a, len) == 1;
	/* PFNs hidden: only one hugetlb page proves it. */
	ps = vma_page_size(a, len);
	return ps > PAGE && (a & ~(ps - 1)) == ((a + len - 1) & ~(ps - 1));
}

static void witness(const struct io_uring_params *p)
{
	size_t n = witness_bytes;

	if (!n)
		return;
	/* A kernel-mapped setup shows nothing: forget the last answer. */
	if (!(p->flags & IORING_SETUP_NO_MMAP)) {
		header_zero = -1;
		return;
	}
	header_zero = th_all_zero((const void *)(uintptr_t)p->cq_off.user_addr, n);
}

static int setup_verdict(unsigned entries, const struct io_uring_params *p)
{
	size_t sqes, rings;

	witness(p);
	switch (active) {
	case PERSONA_DISABLED:
		return -EPERM;
	case PERSONA_ENOSYS:
		return -ENOSYS;
	case PERSONA_REAL:
		return 0;
	case PERSONA_6_1:
		return p->flags & ~((1u << 14) - 1) ? -EINVAL : 0;
	case PERSONA_6_5:
		if (p->flags & ~((1u << 16) - 1))
			return -EINVAL;		/* no NO_SQARRAY yet */
		if (!(p->flags & IORING_SETUP_NO_MMAP))
			return 0;
		regions(entries, p, 320, &sqes, &rings);
		return sqes > PAGE || rings > PAGE ? -EFAULT : 0;
	case PERSONA_6_12:
		return p->flags & ~((1u << 17) - 1) ? -EINVAL : 0;	/* no HYBRID_IOPOLL */
	case PERSONA_6_6:
		if (p->flags & ~((1u << 17) - 1))
			return -EINVAL;
		if (!(p->flags & IORING_SETUP_NO_MMAP))
			return 0;
		regions(entries, p, 64, &sqes, &rings);
		if (!phys_contiguous(p->sq_off.user_addr, sqes) ||
		    !phys_contiguous(p->cq_off.user_addr, rings))
			return -EINVAL;
		return 0;
	}
	return 0;
}

/*
 * Buffer ring flags: the field was padding (must be 0) up to 6.3,
 * IOU_PBUF_RING_MMAP came in 6.4, IOU_PBUF_RING_INC in 6.12; every persona
 * kernel answers an unknown flag -EINVAL (io_register_pbuf_ring).
 */
static int pbuf_verdict(const struct io_uring_buf_reg *reg)
{
	unsigned known = active == PERSONA_6_1 ? 0 : IOU_PBUF_RING_MMAP;

	return reg && (reg->flags & ~known) ? -EINVAL : 0;
}

static int register_verdict(unsigned op, const void *arg)
{
	/*
	 * Opcodes from 29 on (clock, buffer clone: 6.12; ring resize: 6.13)
	 * are unknown to the 6.1-6.6 personas' kernels.
	 */
	if (active == PERSONA_DISABLED || active == PERSONA_REAL)
		return 0;
	if (active == PERSONA_ENOSYS)
		return -ENOSYS;
	/* 6.12 knows clone (30) and every buffer ring flag; resize is 33 */
	if (active == PERSONA_6_12)
		return op >= 33 ? -EINVAL : 0;
	if (op == IORING_REGISTER_PBUF_RING)
		return pbuf_verdict(arg);
	return op >= 29 ? -EINVAL : 0;
}

static void *supervise(void *arg)
{
	int *ready = arg;

	/* Wait for the test thread to install the filter and pass its fd. */
	if (read(ready[0], &listener, sizeof(listener)) != sizeof(listener))
		return NULL;
	for (;;) {
		struct seccomp_notif req;
		struct seccomp_notif_resp resp;
		int err;

		memset(&req, 0, sizeof(req));
		/*
		 * ENOENT: the caller was interrupted (a signal, or io_uring
		 * task_work) before we took its request; it restarts the
		 * syscall and asks again.  Stopping here would hang it.
		 */
		if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req)) {
			if (errno == ENOENT)
				interrupted++;
			if (errno == EINTR || errno == ENOENT)
				continue;
			return NULL;
		}
		if (req.data.nr == __NR_io_uring_setup)
			err = setup_verdict((unsigned)req.data.args[0],
					    (const struct io_uring_params *)(uintptr_t)req.data.args[1]);
		else
			err = register_verdict((unsigned)req.data.args[1],
					       (const void *)(uintptr_t)req.data.args[2]);
		memset(&resp, 0, sizeof(resp));
		resp.id = req.id;
		if (err) {
			resp.error = err;
			refused++;
		} else {
			resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
			if (req.data.nr == __NR_io_uring_setup)
				passed++;
		}
		ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
	}
}

void persona_install(enum persona p)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 2, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
	};
	struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };
	static int ready[2];
	pthread_t t;
	int fd;

	active = p;
	/* The supervisor starts before the filter exists, so it is never filtered. */
	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pthread_create(&t, NULL, supervise, ready), 0);
	pthread_detach(t);
	cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
			  SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	cr_assert_geq(fd, 0, "seccomp listener: %s", strerror(errno));
	cr_assert_eq(write(ready[1], &fd, sizeof(fd)), sizeof(fd));
}
