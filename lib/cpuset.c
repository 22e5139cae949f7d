/* SPDX-License-Identifier: MIT */
/*
 * Why the kernel refused an SQPOLL thread's CPU: the cpuset this process
 * may use, named in the error (the kernel's answer is a bare -EINVAL).
 */
#include <sched.h>

#include <liburing.h>

#include "internal.h"

/*
 * SQ_AFF with a CPU outside the process's cpuset is a bare -EINVAL from the
 * kernel: when setup failed so, say which CPU and which set.  Only after the
 * kernel refused: which set it checks has changed between versions, and a
 * set too long to read is no reason to refuse anything.
 */
void hr_explain_sq_cpu(const struct io_uring_params *p)
{
	char set[4096];
	cpu_set_t cpus;

	if (!(p->flags & IORING_SETUP_SQPOLL) || !(p->flags & IORING_SETUP_SQ_AFF) ||
	    p->sq_thread_cpu >= CPU_SETSIZE || hr_cpuset_cpus(&cpus, set, sizeof(set)) ||
	    CPU_ISSET(p->sq_thread_cpu, &cpus))
		return;
	hr_set_error("sq_thread_cpu %u is outside the CPUs this process's cpuset allows {%s}",
		     p->sq_thread_cpu, set);
}
