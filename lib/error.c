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

/*
 * This thread's reason, whole: a heap string of the text's own size,
 * replaced on every set (the new text may quote the old one), emptied in
 * place on every clear, freed at thread exit by the key's destructor.
 */
static __thread char *last_error;
static __thread bool last_error_oom;	/* the text did not fit in memory */
static pthread_key_t error_key;
static pthread_once_t error_once = PTHREAD_ONCE_INIT;
static bool error_key_ok;

static void error_free(void *p)
{
	free(p);
	last_error = NULL;
}

static void error_key_init(void)
{
	error_key_ok = !pthread_key_create(&error_key, error_free);
}

/*
 * @msg (heap, or NULL when out of memory) becomes this thread's reason.
 * Without the key (PTHREAD_KEYS_MAX reached) nothing would free it at
 * thread exit: then the reason is the out-of-memory one.
 */
static void error_take(char *msg)
{
	pthread_once(&error_once, error_key_init);
	if (!error_key_ok) {
		free(msg);
		msg = NULL;
	}
	free(last_error);
	last_error = msg;
	last_error_oom = !msg;
	if (error_key_ok)
		pthread_setspecific(error_key, msg);
}

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
	char *msg;

	if (!s || level > s->max_level)
		return;
	/* Whole, like every reason; out of memory the event is not told. */
	if (vasprintf(&msg, fmt, ap) < 0)
		return;
	s->fn(level, msg, s->arg);
	free(msg);
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
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	error_take(msg);
	if (hr_log_on(HUGERING_LOG_DEBUG))
		hr_log(HUGERING_LOG_DEBUG, "%s", hr_last_error());
}

/* The library reads its own error state through this, not the public call. */
const char *hr_last_error(void)
{
	if (last_error)
		return last_error;
	return last_error_oom ? "out of memory for the error text" : "";
}

const char *hugering_last_error(void)
{
	return hr_last_error();
}

/* In place: every public call clears, and that must not cost an allocation. */
void hr_clear_error(void)
{
	if (last_error)
		last_error[0] = '\0';
	last_error_oom = false;
}

/*
 * The result of a public call: a failure always leaves a reason, the most
 * specific one a layer gave, else the errno's own text.
 */
int hr_result(int ret, const char *what)
{
	if (ret < 0 && !hr_last_error()[0])
		hr_set_error("%s: %s", what, strerror(-ret));
	return ret;
}
