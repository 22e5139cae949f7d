/* SPDX-License-Identifier: MIT */
/*
 * Why the calling thread's last call failed: one line, per thread, below
 * every other layer so that any of them can say it.
 */
#include <stdarg.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static __thread char last_error[256];

/*
 * The log callback: one snapshot struct swapped whole, so a reader never
 * pairs one caller's function with another's argument.  Snapshots are
 * never freed (a callback may be running on another thread): each set
 * keeps one small struct, on a list so it stays reachable; programs set
 * it once or twice.
 */
struct log_sink {
	hugering_log_fn fn;
	void *arg;
	int max_level;
	struct log_sink *older;
};

static struct log_sink *sink;
static struct log_sink *all_sinks;
static pthread_mutex_t sinks_lock = PTHREAD_MUTEX_INITIALIZER;

int hugering_set_log(hugering_log_fn fn, int max_level, void *arg)
{
	struct log_sink *s = NULL;

	hr_clear_error();
	if (fn && (max_level < HUGERING_LOG_WARN || max_level > HUGERING_LOG_DEBUG))
		return hr_result(-EINVAL, __func__);
	if (fn) {
		s = malloc(sizeof(*s));
		if (!s)
			return hr_result(-ENOMEM, __func__);
		*s = (struct log_sink){ .fn = fn, .arg = arg, .max_level = max_level };
		pthread_mutex_lock(&sinks_lock);
		s->older = all_sinks;
		all_sinks = s;
		pthread_mutex_unlock(&sinks_lock);
	}
	__atomic_store_n(&sink, s, __ATOMIC_RELEASE);
	return 0;
}

bool hr_log_on(int level)
{
	struct log_sink *s = __atomic_load_n(&sink, __ATOMIC_ACQUIRE);

	return s && level <= s->max_level;
}

static void vlog(int level, const char *fmt, va_list ap)
{
	struct log_sink *s = __atomic_load_n(&sink, __ATOMIC_ACQUIRE);
	char msg[512];

	if (!s || level > s->max_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	s->fn(level, msg, s->arg);
}

void hr_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, fmt, ap);
	va_end(ap);
}

void hr_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	if (hr_log_on(HUGERING_LOG_DEBUG))
		hr_log(HUGERING_LOG_DEBUG, "%s", last_error);
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
