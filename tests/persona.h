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
	PERSONA_6_1,		/* no NO_MMAP: -EINVAL */
	PERSONA_6_5,		/* NO_MMAP regions over one page: -EFAULT */
	PERSONA_6_6,		/* 6.6.5-6.9: discontiguous regions: -EINVAL */
	PERSONA_DISABLED,	/* kernel.io_uring_disabled=2: -EPERM */
	PERSONA_ENOSYS,		/* kernel built without io_uring: -ENOSYS */
};

/* Install for the calling thread and the threads it creates later. */
void persona_install(enum persona p);

/* How many setups the persona refused / let through. */
unsigned persona_refused(void);
unsigned persona_passed(void);
/* How many requests vanished because their caller was interrupted. */
unsigned persona_interrupted(void);

#endif
