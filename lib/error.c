/* SPDX-License-Identifier: MIT */
/*
 * Why the calling thread's last call failed: one line, per thread, below
 * every other layer so that any of them can say it.
 */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

static __thread char last_error[256];

void hr_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

const char *hugering_last_error(void)
{
	return last_error;
}
