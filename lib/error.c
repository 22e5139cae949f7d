/* SPDX-License-Identifier: MIT */
/*
 * Why the calling thread's last call failed: one line, per thread, below
 * every other layer so that any of them can say it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

void hr_clear_error(void)
{
	last_error[0] = '\0';
}

/*
 * The result of a public call: a failure always leaves a reason, the most
 * specific one a layer gave, else the errno's own text.
 */
int hr_result(int ret, const char *what)
{
	if (ret < 0 && !last_error[0])
		hr_set_error("%s: %s", what, strerror(-ret));
	return ret;
}
