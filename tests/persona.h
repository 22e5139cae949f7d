/* SPDX-License-Identifier: MIT */
/*
 * Kernel personas: make io_uring_setup/io_uring_register in this process
 * answer as an older kernel would, at the syscall boundary (a seccomp
 * user-notification filter and a supervisor thread in the same process).
 * Everything the persona does not refuse reaches the real kernel.  Nothing
 * in the library knows about it.  Criterion runs each test in its own
 * process, so a persona lasts exactly one test.
 */
#ifndef HUGERING_TEST_PERSONA_H
#define HUGERING_TEST_PERSONA_H

enum persona {
	PERSONA_6_1,		/* no NO_MMAP, no buffer ring flags: -EINVAL */
	PERSONA_6_5,		/* NO_MMAP regions over one page: -EFAULT */
	PERSONA_6_6,		/* 6.6.5-6.9: discontiguous regions: -EINVAL */
	/* 6.1-6.6: no IOU_PBUF_RING_INC, no buffer clone: -EINVAL */
	PERSONA_6_12,		/* no ring resize (6.13), no memory regions: -EINVAL */
	PERSONA_DISABLED,	/* kernel.io_uring_disabled=2: -EPERM */
	PERSONA_ENOSYS,		/* kernel built without io_uring: -ENOSYS */
	PERSONA_REAL,		/* this kernel, refusing nothing: a witness only */
};

/* Install for the calling thread and the threads it creates later. */
void persona_install(enum persona p);

/* How many setups the persona refused / let through. */
unsigned persona_refused(void);
unsigned persona_passed(void);
/*
 * At every NO_MMAP io_uring_setup, before the kernel sees it: were the first
 * @bytes at the rings address zero?  persona_header_zero() answers for the
 * last such setup: 1 yes, 0 no, -1 none seen.  (6.18 zeroes the header
 * itself, so only here can a test see what the library left there.)
 */
void persona_witness_header(size_t bytes);
int persona_header_zero(void);

/* How many requests vanished because their caller was interrupted. */
unsigned persona_interrupted(void);

#endif
