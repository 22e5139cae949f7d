/* SPDX-License-Identifier: MIT */
/*
 * The fault seam's controls (tests/fault/sys-fault.c, linked in place of
 * lib/sys.c into build/tests/hugering-fault only).
 */
#ifndef HUGERING_SYS_FAULT_H
#define HUGERING_SYS_FAULT_H

#include <stdbool.h>

/* Count calls from 0 again; fail call @n (1-based; 0 = none) with -@err. */
void fault_arm(long n, int err);
/* No more failures; the count goes on. */
void fault_disarm(void);
/* hr_sys_* calls since the last fault_arm(). */
long fault_calls(void);
/* The name of the syscall of call @n since the last arm ("" if not reached). */
const char *fault_name(long n);
/* Was the armed failure injected (call @n reached and injectable)? */
bool fault_fired(void);
/* Can this syscall be made to fail (munmap cannot: see sys-fault.c)? */
bool fault_injectable(const char *name);

/* One call site seen: syscall, the caller's address, how often, failed how often. */
struct fault_site {
	const char *name;
	void *caller;
	long calls, failed;
	char outcomes[256];	/* what the operation returned when it failed here */
};
/* Sites seen since the process started; *n set to their count. */
const struct fault_site *fault_sites(int *n);
/* Forget the sites seen (a forked child reports only its own). */
void fault_reset_sites(void);
/* Note the outcome of the last injected failure on its site. */
void fault_note_outcome(const char *what);

#endif
