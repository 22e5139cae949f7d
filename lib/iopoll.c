/* SPDX-License-Identifier: MIT */
/*
 * Can this file do polled I/O (IORING_SETUP_IOPOLL)?  The same program works
 * on one disk and gets -EOPNOTSUPP from every read on another: the file must
 * be O_DIRECT, on a block device whose queue has poll queues (io_poll = 1),
 * and since 6.11 the block layer refuses polled I/O instead of silently
 * using interrupts.  Answer from the queue's io_poll (partitions resolved to
 * their disk; stacked devices, dm and md, answer for themselves and we name
 * the member that cannot poll), the open flags and file type, then, on the
 * live system, a one-block read on a throw-away IOPOLL ring.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "internal.h"

static int verdict(struct hugering_iopoll_verdict *out, int supported, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * The reason is interned (hr_intern): a verdict belongs to no object that
 * could own it, and its texts come from this machine's disks, so each is
 * kept once for the life of the process.
 */
static int verdict(struct hugering_iopoll_verdict *out, int supported, const char *fmt, ...)
{
	const char *kept = NULL;
	va_list ap;
	char *text;

	va_start(ap, fmt);
	text = hr_vstrf(fmt, ap);
	va_end(ap);
	if (text)
		kept = hr_intern(text);
	free(text);
	if (!kept) {
		hr_set_error("out of memory for the IOPOLL verdict's reason");
		return -ENOMEM;
	}
	out->supported = supported;
	out->reason = kept;
	return 0;
}

/* DEVNAME from the device's uevent, for the reason text. */
static void dev_name(const char *dir, char *buf, size_t len)
{
	char path[600], text[1024], *p;

	snprintf(path, sizeof(path), "%s/uevent", dir);
	hr_copy_str(buf, len, "?");
	if (hr_read_text(path, text, sizeof(text)) < 0 || !(p = strstr(text, "DEVNAME=")))
		return;
	p += 8;
	p[strcspn(p, "\n")] = '\0';
	hr_copy_str(buf, len, p);
}

/* queue/io_poll of the block device whose sysfs directory is @dir. */
static int dir_io_poll(const char *dir, long *io_poll)
{
	char path[700];

	/* A partition's queue is its disk's. */
	snprintf(path, sizeof(path), "%s/partition", dir);
	snprintf(path, sizeof(path), access(path, F_OK) ? "%s/queue/io_poll" : "%s/../queue/io_poll",
		 dir);
	return hr_read_long(path, io_poll);
}

/* The disk's queue/io_poll for device @dev; -ENOENT if not a block device. */
static int queue_io_poll(const char *root, dev_t dev, char *dir, size_t dirlen, char *name,
			 size_t len, long *io_poll)
{
	snprintf(dir, dirlen, "%s/sys/dev/block/%u:%u", root, major(dev), minor(dev));
	if (access(dir, F_OK))
		return -ENOENT;
	dev_name(dir, name, len);
	return dir_io_poll(dir, io_poll);
}

/*
 * A stacked device (dm, md) polls only if its members do.  The member
 * without poll queues, followed down (LVM on LUKS on a disk: the disk),
 * at most three levels; "" if every member polls.  A partition's members
 * are its disk's.
 */
static void member_without_poll(const char *dir, int depth, char *name, size_t len)
{
	char sub[600], member[700];
	struct dirent *e;
	DIR *d;

	name[0] = '\0';
	snprintf(sub, sizeof(sub), "%s/partition", dir);
	snprintf(sub, sizeof(sub), access(sub, F_OK) ? "%s/slaves" : "%s/../slaves", dir);
	d = depth < 3 ? opendir(sub) : NULL;
	while (d && !name[0] && (e = readdir(d))) {
		long io_poll;

		if (e->d_name[0] == '.')
			continue;
		if (snprintf(member, sizeof(member), "%s/%s", sub, e->d_name) >= (int)sizeof(member))
			continue;
		if (dir_io_poll(member, &io_poll) || io_poll)
			continue;
		/* Deeper first: the disk under a volume is what needs poll queues. */
		member_without_poll(member, depth + 1, name, len);
		if (!name[0])
			hr_copy_str(name, len, e->d_name);
	}
	if (d)
		closedir(d);
}

/* The kernel's bound on a device-mapper name (DM_NAME_LEN), with its NUL. */
#define DM_NAME_MAX 128

/* "dm-0 (vg-data)": the device-mapper name too, where there is one. */
static void friendly_name(const char *dir, char *name, size_t len)
{
	char path[600], dm[DM_NAME_MAX + 1];

	snprintf(path, sizeof(path), "%s/dm/name", dir);
	if (hr_read_text(path, dm, sizeof(dm)) <= 0)
		return;
	dm[strcspn(dm, "\n")] = '\0';
	if (snprintf(path, sizeof(path), "%s (%s)", name, dm) < (int)sizeof(path))
		hr_copy_str(name, len, path);
}

static int no_poll_queues(struct hugering_iopoll_verdict *out, const char *dir, const char *name)
{
	char member[NAME_MAX + 1], path[600];

	member_without_poll(dir, 0, member, sizeof(member));
	if (member[0])
		return verdict(out, 0, "%s cannot poll: its member %s has no poll queues "
			       "(queue/io_poll = 0)", name, member);
	snprintf(path, sizeof(path), "%s/md", dir);
	if (!access(path, F_OK))
		return verdict(out, 0, "%s is an md RAID device: md does not do polled I/O", name);
	return verdict(out, 0, "%s has no poll queues (queue/io_poll = 0; NVMe: "
		       "nvme.poll_queues=N)", name);
}

/* One block read on a throw-away IOPOLL ring: what 6.11+ really says. */
static int probe_read_here(int fd, int *res)
{
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	void *buf;
	int ret;

	if (posix_memalign(&buf, 4096, 4096))
		return -ENOMEM;
	ret = io_uring_queue_init(2, &ring, IORING_SETUP_IOPOLL);
	if (ret) {
		free(buf);
		return ret;
	}
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read(sqe, fd, buf, 4096, 0);
	ret = io_uring_submit_and_wait(&ring, 1);
	if (ret == 1)
		ret = io_uring_wait_cqe(&ring, &cqe);
	if (!ret) {
		*res = cqe->res;
		io_uring_cqe_seen(&ring, cqe);
	}
	io_uring_queue_exit(&ring);
	free(buf);
	return ret < 0 ? ret : 0;
}

struct probe_read_call {
	int fd, *res, ret;
};

static void probe_read_call(void *p)
{
	struct probe_read_call *c = p;

	c->ret = probe_read_here(c->fd, c->res);
}

/* The throw-away ring is closed off the caller's thread (hr_run_on_helper). */
static int probe_read(int fd, int *res)
{
	struct probe_read_call c = { fd, res, 0 };

	hr_run_on_helper(probe_read_call, &c);
	return c.ret;
}

int hr_iopoll_probe(int fd, struct hugering_iopoll_verdict *out)
{
	const char *root = hr_sysroot();
	/* Room for the disk's name and its device-mapper name: never cut. */
	char name[NAME_MAX + DM_NAME_MAX + 4], dir[512];
	struct stat st;
	long io_poll;
	int flags, ret, res = 0;
	dev_t dev;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->reason = "";
	if (fd < 0 || fstat(fd, &st))
		return -EBADF;
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return verdict(out, 0, "not a regular file or block device");
	flags = fcntl(fd, F_GETFL);
	if (!(flags & O_DIRECT))
		return verdict(out, 0, "not opened with O_DIRECT: buffered I/O cannot be polled");
	dev = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
	ret = queue_io_poll(root, dev, dir, sizeof(dir), name, sizeof(name), &io_poll);
	if (ret == -ENOENT)
		return verdict(out, 0, "file system not on a block device (%u:%u): no poll queues",
			       major(dev), minor(dev));
	friendly_name(dir, name, sizeof(name));
	if (ret)
		return verdict(out, -1, "cannot read io_poll of %s: %s", name, strerror(-ret));
	if (!io_poll)
		return no_poll_queues(out, dir, name);
	/* A captured tree has no device behind it: its sysfs answer stands. */
	if (*root || (flags & O_ACCMODE) == O_WRONLY)
		return verdict(out, 1, "%s has poll queues (queue/io_poll = 1)", name);
	ret = probe_read(fd, &res);
	if (ret)
		return verdict(out, -1, "%s reports poll queues, probe ring failed: %s", name,
			       strerror(-ret));
	if (res == -EOPNOTSUPP)
		return verdict(out, 0, "%s reports poll queues but a polled read got EOPNOTSUPP",
			       name);
	if (res < 0)
		return verdict(out, -1, "%s: polled probe read failed: %s", name, strerror(-res));
	return verdict(out, 1, "%s has poll queues and a polled read worked", name);
}

static int iopoll_explain(const struct io_uring_cqe *cqe, int fd, char *buf, size_t len)
{
	struct hugering_iopoll_verdict v;
	int ret, need;

	if (!cqe || !buf || !len)
		return -EINVAL;
	buf[0] = '\0';
	if (cqe->res != -EOPNOTSUPP)
		return 0;
	ret = hr_iopoll_probe(fd, &v);
	if (ret)
		return ret;
	if (v.supported == 1)
		return 0;	/* the file polls: something else refused it */
	need = snprintf(buf, len, "fd %d cannot do polled I/O: %s", fd, v.reason);
	if ((size_t)need >= len) {
		/* Never a cut reason: the caller learns the size and asks again. */
		buf[0] = '\0';
		hr_set_error("the reason needs a buffer of %d bytes, got %zu", need + 1, len);
		return -ERANGE;
	}
	return 1;
}

int hugering_iopoll_probe(int fd, struct hugering_iopoll_verdict *out)
{
	return HR_PUBLIC(hr_iopoll_probe(fd, out));
}

int hugering_iopoll_explain(const struct io_uring_cqe *cqe, int fd, char *buf, size_t len)
{
	return HR_PUBLIC(iopoll_explain(cqe, fd, buf, len));
}
