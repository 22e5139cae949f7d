/* SPDX-License-Identifier: MIT */
/* Small helpers: reading sysfs/procfs values, strings, integer math. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int hr_read_long(const char *path, long *out)
{
	char buf[64], *end;
	int ret = hr_read_text(path, buf, sizeof(buf));

	if (ret < 0)
		return ret;
	errno = 0;
	*out = strtol(buf, &end, 10);
	if (errno || end == buf)
		return -EIO;
	return 0;
}

unsigned hr_log2(size_t x)
{
	return (unsigned)(sizeof(unsigned long) * 8 - 1 - __builtin_clzl(x));
}

void hr_copy_str(char *dst, size_t len, const char *src)
{
	size_t n = strnlen(src, len - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
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
	char rel[256] = "", path[512], abs[512];
	const char *root = hr_sysroot();

	hr_path(root, "/proc/self/cpuset", path, sizeof(path));
	if (hr_read_text(path, rel, sizeof(rel)) > 0)
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
