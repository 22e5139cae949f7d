/* SPDX-License-Identifier: MIT */
/* Small helpers: reading sysfs/procfs values, strings, integer math. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int hr_read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	close(fd);
	buf[n] = '\0';
	return (int)n;
}

/*
 * One number and nothing else.  A file that fills the buffer was cut, so
 * its number is not the one written (a 100 KB line of zeros then digits
 * would read as 0): that is an error, like trailing garbage.
 */
int hr_read_long(const char *path, long *out)
{
	char buf[64], *end;
	int ret = hr_read_text(path, buf, sizeof(buf));
	long v;

	if (ret < 0)
		return ret;
	if ((size_t)ret == sizeof(buf) - 1)
		return -EIO;
	errno = 0;
	v = strtol(buf, &end, 10);
	if (errno || end == buf)
		return -EIO;
	end += strspn(end, " \t\n");
	if (*end)
		return -EIO;
	*out = v;
	return 0;
}

/* 0 for 0 and 1: clz(0) is undefined, and a hostile tree can make x 0. */
unsigned hr_log2(size_t x)
{
	if (x < 2)
		return 0;
	return (unsigned)(sizeof(unsigned long) * 8 - 1 - __builtin_clzl(x));
}

/*
 * How much of @s[0, n) to keep so it does not end inside a UTF-8
 * character: reports print these strings and JSON must stay valid.
 * Bytes that are not UTF-8 at all are left for the printer to handle.
 */
static size_t utf8_boundary(const char *s, size_t n)
{
	size_t i = n, need;
	unsigned char lead;

	while (i > 0 && n - i < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0)
		return n;
	lead = (unsigned char)s[--i];
	need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	return need > n - i ? i : n;
}

/* Copy at most @len - 1 bytes; a cut falls between characters. */
void hr_copy_str(char *dst, size_t len, const char *src)
{
	size_t n = strnlen(src, len - 1);

	if (src[n])
		n = utf8_boundary(src, n);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/*
 * Reason texts are never cut: they are formatted into a heap string of
 * their own size.  NULL only when memory is out.
 */
char *hr_vstrf(const char *fmt, va_list ap)
{
	char *s;

	return vasprintf(&s, fmt, ap) < 0 ? NULL : s;
}

char *hr_strf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = hr_vstrf(fmt, ap);
	va_end(ap);
	return s;
}

/*
 * A reason an object owns: "" (static) for none, else a heap copy, so the
 * public field is never NULL and hr_reason_free knows what to free.  Out of
 * memory the reason is lost ("") rather than the object.
 */
const char *hr_reason_dup(const char *s)
{
	char *d;

	if (!s || !*s || !(d = strdup(s)))
		return "";
	return d;
}

void hr_reason_free(const char *s)
{
	if (s && *s)
		free((char *)s);
}

/*
 * Texts kept for the life of the process, one copy each: for answers that
 * belong to no object (an IOPOLL verdict, a mount path).  They come from a
 * vocabulary bounded by the machine (its disks, its mounts), so the table
 * stays small; a text handed out stays valid however often it is asked for.
 * NULL only when memory is out.
 */
struct interned {
	struct interned *next;
	char text[];
};

static struct interned *interned;
static pthread_mutex_t interned_lock = PTHREAD_MUTEX_INITIALIZER;

const char *hr_intern(const char *s)
{
	struct interned *i;
	size_t n = strlen(s) + 1;

	pthread_mutex_lock(&interned_lock);
	for (i = interned; i && strcmp(i->text, s); i = i->next)
		;
	if (!i && (i = malloc(sizeof(*i) + n))) {
		memcpy(i->text, s, n);
		i->next = interned;
		interned = i;
	}
	pthread_mutex_unlock(&interned_lock);
	return i ? i->text : NULL;
}

/* The liburing the dynamic linker loaded, not the one we compiled against. */
bool hr_liburing_at_least(int major, int minor)
{
	/* io_uring_check_version() is true when the library is OLDER. */
	return !io_uring_check_version(major, minor);
}

const char *hr_sysroot(void)
{
	const char *r = getenv("HUGERING_SYSROOT");

	return r ? r : "";
}

void hr_path(const char *root, const char *abs, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s", root, abs);
}

bool hr_cap_effective(const char *root, int cap)
{
	char path[512], buf[4096], *s;
	unsigned long long eff;

	hr_path(root, "/proc/self/status", path, sizeof(path));
	if (hr_read_text(path, buf, sizeof(buf)) < 0 || !(s = strstr(buf, "CapEff:")) ||
	    sscanf(s, "CapEff: %llx", &eff) != 1)
		return false;
	return eff & (1ULL << cap);
}

/* "0-3,8" into @out; false on anything else. */
static bool parse_cpulist(const char *list, cpu_set_t *out)
{
	const char *p = list;

	CPU_ZERO(out);
	while (*p && *p != '\n') {
		char *end;
		long a = strtol(p, &end, 10), b = a;

		if (end == p || a < 0)
			return false;
		p = end;
		if (*p == '-') {
			b = strtol(p + 1, &end, 10);
			if (end == p + 1 || b < a)
				return false;
			p = end;
		}
		for (long c = a; c <= b && c < CPU_SETSIZE; c++)
			CPU_SET((int)c, out);
		if (*p == ',')
			p++;
	}
	return true;
}

/*
 * The CPUs the kernel lets an SQPOLL thread be pinned to: those of this
 * task's cpuset (cgroup v2 or v1), which sched_setaffinity does not narrow;
 * the online CPUs where no cpuset is mounted.  The list text goes in @list;
 * a list that does not fit is an error (-ENOENT), never a shorter set.
 */
int hr_cpuset_cpus(cpu_set_t *out, char *list, size_t len)
{
	static const char *const files[] = {
		"/sys/fs/cgroup%s/cpuset.cpus.effective",
		"/sys/fs/cgroup/cpuset%s/cpuset.effective_cpus",
		"/sys/devices/system/cpu/online",
	};
	char rel[PATH_MAX] = "", path[PATH_MAX], abs[PATH_MAX];
	const char *root = hr_sysroot();
	int n;

	hr_path(root, "/proc/self/cpuset", path, sizeof(path));
	n = hr_read_text(path, rel, sizeof(rel));
	/* A cut cgroup path would name another cpuset (or none: the online set). */
	if (n == (int)sizeof(rel) - 1)
		return -ENOENT;
	if (n > 0)
		rel[strcspn(rel, "\n")] = '\0';
	if (!strcmp(rel, "/"))
		rel[0] = '\0';
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (snprintf(abs, sizeof(abs), files[i], rel) >= (int)sizeof(abs))
			continue;
		hr_path(root, abs, path, sizeof(path));
		if (hr_read_text(path, list, len) > 0 && list[0] != '\n' &&
		    strlen(list) + 1 < len && parse_cpulist(list, out)) {
			list[strcspn(list, "\n")] = '\0';
			return 0;
		}
	}
	return -ENOENT;
}

struct helper_call {
	void (*fn)(void *);
	void *arg;
};

/* Set on a helper thread: nested scratch work runs there, not on another. */
static __thread bool on_helper;

static void *helper_main(void *p)
{
	struct helper_call *c = p;

	on_helper = true;
	c->fn(c->arg);
	return NULL;
}

/*
 * Closing an io_uring queues teardown task work, flagged like a signal, to
 * every thread that used the ring: for milliseconds after, that thread's
 * interruptible syscalls end early (short reads).  Scratch rings are
 * therefore made and closed on a short-lived thread of our own; its exit
 * drops its io_uring context, so nothing reaches the caller's threads.
 * Signals stay blocked there, so no handler of the program runs on it.
 * If no thread can be made (thread limit), the work runs in place.  Each
 * helper is a thread id the program sees come and go (the first call makes
 * one: the kernel probe).
 */
void hr_run_on_helper(void (*fn)(void *), void *arg)
{
	struct helper_call c = { fn, arg };
	sigset_t all, old;
	pthread_t t;
	int ret;

	if (on_helper) {
		fn(arg);
		return;
	}

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&t, NULL, helper_main, &c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		fn(arg);
		return;
	}
	pthread_join(t, NULL);
}

long hr_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}
