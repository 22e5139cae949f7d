/* SPDX-License-Identifier: MIT */
/*
 * libhugering-preload.so: LD_PRELOAD it into a program that links liburing
 * dynamically, and every ring the program makes with io_uring_queue_init()
 * or io_uring_queue_init_params() comes from hugering (hugepage memory where
 * the kernel takes it, else a reported fallback); io_uring_queue_exit()
 * destroys it through hugering.  Rings hugering did not make
 * (io_uring_queue_init_mem, io_uring_queue_mmap) go to liburing untouched.
 *
 * A client of the public API only.  The library copy linked into this object
 * calls liburing's io_uring_queue_init_params()/io_uring_queue_exit() itself
 * (kernel-mapped fallback, teardown); those calls land here again, because
 * this object defines the names first.  They are recognised and forwarded to
 * the real functions: by a thread-local flag set while this thread is inside
 * hugering, and by the caller's address lying in this object (a helper
 * thread of the library has no flag).
 *
 * HUGERING_PRELOAD_REPORT=1 (stderr) or =/absolute/path (appended) prints
 * one line at exit: rings served per mode, fallbacks with their reasons.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hugering.h>

typedef int (*init_params_fn)(unsigned, struct io_uring *, struct io_uring_params *);
typedef int (*init_fn)(unsigned, struct io_uring *, unsigned);
typedef void (*exit_fn)(struct io_uring *);

/* The definitions this object interposes (the version script exports them). */
int io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags);
int io_uring_queue_init_params(unsigned entries, struct io_uring *ring,
			       struct io_uring_params *p);
void io_uring_queue_exit(struct io_uring *ring);

static struct {
	init_fn init;
	init_params_fn init_params;
	exit_fn exit;
	void *self_base;	/* load address of this object */
	bool disabled;		/* the program uses hugering itself */
} real;
static pthread_once_t real_once = PTHREAD_ONCE_INIT;

/* This thread is inside a hugering call (or a forwarded liburing call). */
static __thread int inside;

/* ------------------------------------------------------------------ */
/* Counters                                                            */
/* ------------------------------------------------------------------ */

#define MAX_REASONS 16

static atomic_ulong n_mode[HUGERING_MODE_KERNEL + 1];
static atomic_ulong n_fallbacks, n_errors, n_passthrough_exits, n_calls;

/* Distinct fallback reasons, counted; the rest are lumped as "other". */
static pthread_mutex_t reasons_lock = PTHREAD_MUTEX_INITIALIZER;
static struct reason {
	int err;
	unsigned long count;
	char text[192];
} reasons[MAX_REASONS];
static unsigned n_reasons;
static unsigned long other_reasons;

static char report_to[4096];	/* HUGERING_PRELOAD_REPORT as the program started */

static void note_fallback(const struct hugering_ring_info *info)
{
	unsigned i;

	atomic_fetch_add(&n_fallbacks, 1);
	pthread_mutex_lock(&reasons_lock);
	for (i = 0; i < n_reasons; i++)
		if (reasons[i].err == info->fallback_errno &&
		    !strcmp(reasons[i].text, info->fallback_reason))
			break;
	if (i == n_reasons && n_reasons < MAX_REASONS) {
		reasons[i].err = info->fallback_errno;
		snprintf(reasons[i].text, sizeof(reasons[i].text), "%s", info->fallback_reason);
		n_reasons++;
	}
	if (i < n_reasons)
		reasons[i].count++;
	else
		other_reasons++;
	pthread_mutex_unlock(&reasons_lock);
}

/* After a successful hugering init: which mode, and was it a fallback? */
static void note_ring(const struct io_uring *ring)
{
	struct hugering_ring_info info;

	if (hugering_ring_info(ring, &info))
		return;
	if (info.mode >= HUGERING_MODE_NOMMAP_HUGE && info.mode <= HUGERING_MODE_KERNEL)
		atomic_fetch_add(&n_mode[info.mode], 1);
	/* A policy choice (HUGERING_MODE=kernel) has no errno: not a fallback. */
	if (info.fallback_errno)
		note_fallback(&info);
}

/*
 * A forked child reports only the rings it makes itself, else the parent's
 * rings would be counted twice when both append to one file.
 */
static void atfork_prepare(void)
{
	pthread_mutex_lock(&reasons_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&reasons_lock);
}

static void atfork_child(void)
{
	for (unsigned m = 0; m <= HUGERING_MODE_KERNEL; m++)
		atomic_store(&n_mode[m], 0);
	atomic_store(&n_fallbacks, 0);
	atomic_store(&n_errors, 0);
	atomic_store(&n_passthrough_exits, 0);
	atomic_store(&n_calls, 0);
	n_reasons = 0;
	other_reasons = 0;
	pthread_mutex_unlock(&reasons_lock);
}

/* ------------------------------------------------------------------ */
/* Report                                                              */
/* ------------------------------------------------------------------ */

static size_t append(char *buf, size_t len, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static size_t append(char *buf, size_t len, size_t at, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (at >= len)
		return at;
	va_start(ap, fmt);
	n = vsnprintf(buf + at, len - at, fmt, ap);
	va_end(ap);
	return n < 0 ? at : at + (size_t)n;
}

static const char *errno_name(int err)
{
	const char *name = strerrorname_np(err);

	return name ? name : "E?";
}

/* The one report line, newline included. */
static void format_report(char *buf, size_t len)
{
	size_t at = 0;

	at = append(buf, len, at, "hugering-preload: prog=%s pid=%d nommap_huge=%lu "
		    "nommap_base=%lu kernel=%lu fallbacks=%lu errors=%lu passthrough_exits=%lu%s",
		    program_invocation_short_name, (int)getpid(),
		    atomic_load(&n_mode[HUGERING_MODE_NOMMAP_HUGE]),
		    atomic_load(&n_mode[HUGERING_MODE_NOMMAP_BASE]),
		    atomic_load(&n_mode[HUGERING_MODE_KERNEL]), atomic_load(&n_fallbacks),
		    atomic_load(&n_errors), atomic_load(&n_passthrough_exits),
		    real.disabled ? " disabled=program-links-hugering" : "");
	pthread_mutex_lock(&reasons_lock);
	for (unsigned i = 0; i < n_reasons; i++)
		at = append(buf, len, at, "%s%lux %s \"%s\"", i ? "; " : " reasons=[",
			    reasons[i].count, errno_name(reasons[i].err), reasons[i].text);
	if (other_reasons)
		at = append(buf, len, at, "%s%lux other", n_reasons ? "; " : " reasons=[",
			    other_reasons);
	if (n_reasons || other_reasons)
		at = append(buf, len, at, "]");
	pthread_mutex_unlock(&reasons_lock);
	if (at >= len - 1)
		at = len - 2;	/* truncated: still one line */
	buf[at] = '\n';
	buf[at + 1] = '\0';
}

/* One write(2), so lines from concurrent processes never interleave. */
static void write_line(int fd, const char *line)
{
	size_t n = strlen(line);

	while (write(fd, line, n) < 0 && errno == EINTR)
		;
}

/* Processes that never called the three functions (a shell, timeout) stay quiet. */
__attribute__((destructor)) static void report(void)
{
	char line[2048];
	int fd;

	if (!report_to[0] || !strcmp(report_to, "0") || !atomic_load(&n_calls))
		return;
	format_report(line, sizeof(line));
	if (!strcmp(report_to, "1")) {
		write_line(STDERR_FILENO, line);
		return;
	}
	if (report_to[0] != '/') {
		dprintf(STDERR_FILENO, "hugering-preload: HUGERING_PRELOAD_REPORT=%s is neither "
			"1 (stderr) nor an absolute path: no report\n", report_to);
		return;
	}
	fd = open(report_to, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		dprintf(STDERR_FILENO, "hugering-preload: cannot append the report to %s: %s\n",
			report_to, strerror(errno));
		return;
	}
	write_line(fd, line);
	close(fd);
}

__attribute__((constructor)) static void setup(void)
{
	const char *r = getenv("HUGERING_PRELOAD_REPORT");

	/* Kept now: the program may change its environment before exit. */
	if (r)
		snprintf(report_to, sizeof(report_to), "%s", r);
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ------------------------------------------------------------------ */
/* The real functions and who is calling                               */
/* ------------------------------------------------------------------ */

static void resolve(void)
{
	Dl_info self, other;
	void *h;

	real.init = (init_fn)dlsym(RTLD_NEXT, "io_uring_queue_init");
	real.init_params = (init_params_fn)dlsym(RTLD_NEXT, "io_uring_queue_init_params");
	real.exit = (exit_fn)dlsym(RTLD_NEXT, "io_uring_queue_exit");
	if (!real.init || !real.init_params || !real.exit) {
		dprintf(STDERR_FILENO, "hugering-preload: liburing's io_uring_queue_init* / "
			"io_uring_queue_exit not found (%s): aborting\n", dlerror());
		abort();
	}
	if (dladdr((void *)resolve, &self))
		real.self_base = self.dli_fbase;
	/*
	 * This object's hugering symbols are local: one found here belongs to a
	 * libhugering.so the program uses itself.  Two copies would each wrap
	 * the other's rings: leave the program alone.
	 */
	h = dlsym(RTLD_DEFAULT, "hugering_queue_init_params");
	if (h && dladdr(h, &other) && other.dli_fbase != real.self_base)
		real.disabled = true;
}

/* Is this call hugering's own (any thread), or one we forward? */
static bool from_hugering(const void *caller)
{
	Dl_info info;

	pthread_once(&real_once, resolve);
	if (inside)
		return true;
	if (real.disabled) {
		atomic_fetch_add(&n_calls, 1);	/* so the report says why nothing was served */
		return true;
	}
	return real.self_base && dladdr(caller, &info) && info.dli_fbase == real.self_base;
}

/* ------------------------------------------------------------------ */
/* The interposed functions                                            */
/* ------------------------------------------------------------------ */

/*
 * Forwarded calls keep the flag set: the real io_uring_queue_init calls
 * io_uring_queue_init_params through liburing's PLT, back into this object.
 */
static int forward_init_params(unsigned entries, struct io_uring *ring, struct io_uring_params *p)
{
	int ret;

	inside++;
	ret = real.init_params(entries, ring, p);
	inside--;
	return ret;
}

static int served(int ret, const struct io_uring *ring)
{
	if (ret)
		atomic_fetch_add(&n_errors, 1);
	else
		note_ring(ring);
	return ret;
}

int io_uring_queue_init_params(unsigned entries, struct io_uring *ring, struct io_uring_params *p)
{
	int ret;

	if (from_hugering(__builtin_return_address(0)))
		return forward_init_params(entries, ring, p);
	atomic_fetch_add(&n_calls, 1);
	inside++;
	ret = hugering_queue_init_params(entries, ring, p);
	inside--;
	return served(ret, ring);
}

int io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
	int ret;

	if (from_hugering(__builtin_return_address(0))) {
		inside++;
		ret = real.init(entries, ring, flags);
		inside--;
		return ret;
	}
	atomic_fetch_add(&n_calls, 1);
	inside++;
	ret = hugering_queue_init(entries, ring, flags);
	inside--;
	return served(ret, ring);
}

void io_uring_queue_exit(struct io_uring *ring)
{
	struct hugering_ring_info info;
	bool ours;

	if (from_hugering(__builtin_return_address(0))) {
		inside++;
		real.exit(ring);
		inside--;
		return;
	}
	atomic_fetch_add(&n_calls, 1);
	inside++;
	ours = ring && hugering_ring_info(ring, &info) == 0;
	if (ours) {
		hugering_queue_exit(ring);
	} else {
		atomic_fetch_add(&n_passthrough_exits, 1);
		real.exit(ring);
	}
	inside--;
}
