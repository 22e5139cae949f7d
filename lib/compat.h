/* SPDX-License-Identifier: MIT */
/*
 * Kernel ABI constants hugering uses that older liburing headers lack, and
 * the one workaround for an old liburing's behaviour that needs no more than
 * liburing itself (hr_queue_exit_app_mem; tests and bench use it too).
 *
 * liburing installs its own copy of the kernel UAPI (liburing/io_uring.h),
 * so an old liburing means old constants even on a new kernel.  The oldest
 * liburing hugering supports is 2.5 (Ubuntu 24.04), whose copy is the UAPI of
 * Linux 6.5.  Each value below is the kernel's, never liburing's: whether the
 * running kernel accepts it is probed at run time (probe.c), and what the
 * running liburing can do is asked of it (hr_liburing_at_least), never
 * inferred from these headers.
 *
 * Include this after <liburing.h> (it does so itself): some names are enum
 * constants in newer headers, which the preprocessor cannot see.  Defining
 * them as macros of the same value after the enum is harmless; before it, the
 * enum would not compile.  Any later <linux/io_uring.h> is a no-op, as it
 * shares liburing's include guard (LINUX_IO_URING_H).
 */
#ifndef HUGERING_COMPAT_H
#define HUGERING_COMPAT_H

#include <liburing.h>

/* Linux 6.6 (liburing 2.6 headers): no SQ index array in the rings region. */
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif

/* Linux 6.13 (liburing 2.9 headers; an enum there): io_uring_register opcode. */
#ifndef IORING_REGISTER_RESIZE_RINGS
#define IORING_REGISTER_RESIZE_RINGS 33
#endif

/* Linux 6.12 (liburing 2.8 headers; an enum there): incremental buffer rings. */
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

/* Linux 6.12 (liburing 2.9 headers; an enum there): share registered buffers. */
#ifndef IORING_REGISTER_CLONE_BUFFERS
#define IORING_REGISTER_CLONE_BUFFERS 30
#endif

/* Linux 6.9 and 6.10 (liburing 2.6/2.7 headers; enums there): what the ring pool puts back. */
#ifndef IORING_UNREGISTER_NAPI
#define IORING_UNREGISTER_NAPI 28
#endif
#ifndef IORING_REGISTER_CLOCK
#define IORING_REGISTER_CLOCK 29
#endif

/*
 * io_uring_queue_exit() for a ring set up by io_uring_queue_init_mem() in
 * the caller's memory.  liburing 2.5 to 2.7 munmap the SQEs of every
 * NO_MMAP ring whose sq.ring_sz is 0, application memory included (fixed
 * in 2.8 by liburing f4934cc8 "src/setup: don't munmap user provided
 * buffer"); where the SQEs start a hugetlb page, the whole hugepage goes
 * (elsewhere in one, munmap fails with EINVAL and nothing happens).  A non-zero
 * ring_sz sends them down the branch that honours their INT_FLAG_APP_MEM;
 * ring_sz is not read again before the ring is gone.  Asked of the running
 * liburing, not of these headers.
 */
static inline void hr_queue_exit_app_mem(struct io_uring *ring)
{
	if (io_uring_check_version(2, 8) && !ring->sq.ring_sz)
		ring->sq.ring_sz = 1;
	io_uring_queue_exit(ring);
}

#endif
