/* SPDX-License-Identifier: MIT */
/*
 * The pool of live rings (issue 14, item 3; HUGERING_INIT_POOLED): a ring
 * left with every registration and requests in flight comes back from the
 * pool like a fresh ring (params as at creation, SQ and CQ empty, no stray
 * completion, every registration possible again, the thread's io-wq
 * limits as the program left them); rings that cannot be reset are closed; threads never get each
 * other's rings; thread exit, idle time, the cap, fork and zeroed options.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>

#include "helpers.h"

int th_fd_count(void);


#define ENTRIES 64
#define DEFER (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN)
#define SQPOLL IORING_SETUP_SQPOLL
#define SQ_IDLE_MS 10

static const struct hugering_init_opts pooled_opts = { .flags = HUGERING_INIT_POOLED };

/* Why the last ring was not pooled (the library's debug log), for the failure messages. */
static __thread char why[256];

static void note(int level, const char *msg, void *arg)
{
	(void)level;
	(void)arg;
	if (!strncmp(msg, "ring not pooled", 15))
		snprintf(why, sizeof(why), "%s", msg);
}

static void suite_init(void)
{
	th_init();
	hugering_set_log(note, HUGERING_LOG_DEBUG, NULL);
}

TestSuite(ringpool, .init = suite_init, .fini = th_fini, .timeout = 60);

static int make(struct io_uring *ring, struct io_uring_params *p, unsigned flags,
		const struct hugering_init_opts *o)
{
	memset(p, 0, sizeof(*p));
	p->flags = flags;
	if (flags & IORING_SETUP_SQPOLL)
		p->sq_thread_idle = SQ_IDLE_MS;	/* not the default second of polling per ring */
	return hugering_queue_init_opts(ENTRIES, ring, p, o);
}

static int pooled(const struct io_uring *ring)
{
	struct hugering_ring_info info;

	cr_assert_eq(hugering_ring_info(ring, &info), 0);
	return info.pooled;
}

static void make_pooled(struct io_uring *ring, struct io_uring_params *p, unsigned flags)
{
	int ret = make(ring, p, flags, &pooled_opts);

	cr_assert_eq(ret, 0, "create: %s", hugering_last_error());
}

/* liburing's and the kernel's view of a fresh ring: nothing queued either way. */
static void assert_empty(struct io_uring *ring)
{
	cr_assert_eq(io_uring_sq_ready(ring), 0, "SQEs left in the SQ");
	cr_assert_eq(*ring->sq.khead, *ring->sq.ktail, "SQ head != tail");
	cr_assert_eq(io_uring_cq_ready(ring), 0, "CQEs left in the CQ");
	cr_assert_eq(*ring->cq.khead, *ring->cq.ktail, "CQ head != tail");
	cr_assert_eq(*ring->cq.koverflow, 0);
	cr_assert_eq(io_uring_sq_space_left(ring), ring->sq.ring_entries);
}

/* A NOP comes back alone; nothing else arrives in the next 40 ms. */
static void assert_no_stray(struct io_uring *ring)
{
	struct __kernel_timespec ts = { .tv_nsec = 40 * 1000000L };
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;

	cr_assert_not_null(sqe);
	io_uring_prep_nop(sqe);
	sqe->user_data = 0x5eed;
	cr_assert_eq(io_uring_submit(ring), 1);
	cr_assert_eq(io_uring_wait_cqe(ring, &cqe), 0);
	cr_assert_eq(cqe->user_data, 0x5eed, "stray CQE user_data %llu res %d",
		     (unsigned long long)cqe->user_data, cqe->res);
	io_uring_cqe_seen(ring, cqe);
	cr_assert_eq(io_uring_wait_cqe_timeout(ring, &cqe, &ts), -ETIME,
		     "a stray CQE arrived (user_data %llu)",
		     (unsigned long long)(cqe ? cqe->user_data : 0));
}

struct napi_reg {		/* struct io_uring_napi (Linux 6.9), absent from older headers */
	uint32_t busy_poll_to;
	uint8_t prefer_busy_poll, opcode, pad[2];
	uint32_t op_param, resv;
};

/* Every registration this test knows; @lib_bufs: liburing's, else hugering's. */
static void register_everything(struct io_uring *ring, int *fds, void *buf, bool lib_bufs,
				int *efd, bool *napi)
{
	struct iovec iov = { buf, 4096 };
	unsigned limits[2] = { 2, 3 };
	struct napi_reg nr = { .busy_poll_to = 10 };
	cpu_set_t set;
	int err;

	cr_assert_eq(io_uring_register_files(ring, fds, 2), 0);
	if (lib_bufs)
		cr_assert_eq(io_uring_register_buffers(ring, &iov, 1), 0);
	else
		cr_assert_eq(hugering_register_buffers(ring, NULL, &iov, 1, 0, NULL), 0,
			     "%s", hugering_last_error());
	*efd = eventfd(0, EFD_CLOEXEC);
	cr_assert_geq(*efd, 0);
	cr_assert_eq(io_uring_register_eventfd(ring, *efd), 0);
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	cr_assert_eq(io_uring_register_iowq_aff(ring, sizeof(set), &set), 0);
	cr_assert_eq(io_uring_register_iowq_max_workers(ring, limits), 0);
	*napi = syscall(__NR_io_uring_register, ring->ring_fd, 27 /* REGISTER_NAPI */, &nr, 1) == 0;
	cr_assert_not_null(hugering_setup_buf_ring(ring, 8, 7, 0, &err), "buf ring: %d", err);
	/* The CQ flag a program may set. */
	io_uring_cq_eventfd_toggle(ring, false);
}

/* Requests that will not end by themselves, and an SQE never submitted. */
static void leave_in_flight(struct io_uring *ring, int sock, char *rbuf)
{
	static struct __kernel_timespec ts = { .tv_sec = 30 };
	struct io_uring_sqe *sqe;

	sqe = io_uring_get_sqe(ring);
	io_uring_prep_timeout(sqe, &ts, 0, 0);
	sqe->user_data = 1;
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_recv(sqe, sock, rbuf, 64, 0);
	sqe->user_data = 2;
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_poll_add(sqe, sock, POLLIN);
	sqe->user_data = 3;
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_read(sqe, sock, rbuf, 64, 0);
	sqe->flags |= IOSQE_ASYNC;	/* to io-wq: blocked there */
	sqe->user_data = 4;
	cr_assert_eq(io_uring_submit(ring), 4);
	sqe = io_uring_get_sqe(ring);	/* written, never submitted */
	io_uring_prep_nop(sqe);
	sqe->user_data = 5;
}

static void used_ring_comes_back_fresh(unsigned flags, bool lib_bufs)
{
	struct io_uring ring;
	struct io_uring_params p1, p2;
	unsigned limits[2] = { 0, 0 };
	int sv[2], pipefd[2], efd, efd2, err;
	char *buf = aligned_alloc(4096, 4096), rbuf[64];
	struct iovec iov = { buf, 4096 };
	bool napi;

	cr_assert_not_null(buf);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(pipe2(pipefd, O_CLOEXEC), 0);
	make_pooled(&ring, &p1, flags);
	cr_assert_eq(pooled(&ring), 0);
	register_everything(&ring, pipefd, buf, lib_bufs, &efd, &napi);
	leave_in_flight(&ring, sv[0], rbuf);
	hugering_queue_exit(&ring);

	make_pooled(&ring, &p2, flags);
	cr_assert_eq(pooled(&ring), 1, "the used ring was not pooled: %s", why);
	cr_assert_eq(memcmp(&p1, &p2, sizeof(p1)), 0, "params differ from the first creation");
	assert_empty(&ring);
	cr_assert_eq(*ring.cq.kflags & IORING_CQ_EVENTFD_DISABLED, 0);
	assert_no_stray(&ring);
	/* Nothing left registered: each registration is accepted again. */
	cr_assert_eq(io_uring_register_files(&ring, pipefd, 2), 0, "files left registered");
	cr_assert_eq(io_uring_register_buffers(&ring, &iov, 1), 0, "buffers left registered");
	efd2 = eventfd(0, EFD_CLOEXEC);
	cr_assert_eq(io_uring_register_eventfd(&ring, efd2), 0, "eventfd left registered");
	cr_assert_not_null(hugering_setup_buf_ring(&ring, 8, 7, 0, &err),
			   "buffer group 7 left registered: %d", err);
	/*
	 * The io-wq limits are the thread's (its io-wq outlives the ring): a
	 * close leaves them as the program set them, and so must the reset.
	 */
	cr_assert_eq(io_uring_register_iowq_max_workers(&ring, limits), 0);
	cr_assert(limits[0] == 2 && limits[1] == 3,
		  "io-wq max workers %u/%u: the thread's 2/3 were changed by the reset",
		  limits[0], limits[1]);
	if (napi) {
		char path[64], info[4096];

		snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ring.ring_fd);
		th_slurp(path, info, sizeof(info));
		cr_assert(strstr(info, "NAPI:\tdisabled") || !strstr(info, "NAPI:"),
			  "NAPI left on:\n%s", info);
	}
	hugering_queue_exit(&ring);
	close(efd);
	close(efd2);
	close(sv[0]);
	close(sv[1]);
	close(pipefd[0]);
	close(pipefd[1]);
	free(buf);
}

Test(ringpool, defer_ring_reset_hugering_buffers)
{
	used_ring_comes_back_fresh(DEFER, false);
}

Test(ringpool, defer_ring_reset_liburing_buffers)
{
	used_ring_comes_back_fresh(DEFER, true);
}

Test(ringpool, single_issuer_ring_reset)
{
	used_ring_comes_back_fresh(IORING_SETUP_SINGLE_ISSUER, false);
}

Test(ringpool, plain_ring_reset)
{
	used_ring_comes_back_fresh(0, false);
}

/* Exit, then the next create: was the ring pooled? */
static int cycle(unsigned flags, const struct hugering_init_opts *o)
{
	struct io_uring ring;
	struct io_uring_params p;
	int ret;

	cr_assert_eq(make(&ring, &p, flags, o), 0, "%s", hugering_last_error());
	hugering_queue_exit(&ring);
	cr_assert_eq(make(&ring, &p, flags, o), 0, "%s", hugering_last_error());
	ret = pooled(&ring);
	if (flags & IORING_SETUP_R_DISABLED)
		cr_assert_eq(io_uring_enable_rings(&ring), 0);
	th_nops(&ring, 4);
	hugering_queue_exit(&ring);
	return ret;
}

Test(ringpool, zeroed_options_never_pool)
{
	struct hugering_init_opts zero = { 0 };
	int fds = th_fd_count();

	cr_assert_eq(cycle(DEFER, &zero), 0);
	cr_assert_eq(cycle(DEFER, NULL), 0);
	cr_assert_eq(th_fd_count(), fds, "a ring was kept without HUGERING_INIT_POOLED");
	cr_assert_eq(cycle(DEFER, &pooled_opts), 1, "control: POOLED pools");
}

/*
 * SQPOLL rings are never pooled: the kernel thread keeps its creator's
 * credentials and namespaces from the ring's creation (a fresh ring takes
 * the thread's current ones), and on Linux 6.16+ nothing proves that the
 * drain barrier's draining has ended (README).
 */
Test(ringpool, sqpoll_ring_is_never_pooled)
{
	int fds = th_fd_count();

	cr_assert_eq(cycle(SQPOLL, &pooled_opts), 0, "an SQPOLL ring was pooled");
	cr_assert_eq(cycle(SQPOLL | IORING_SETUP_SINGLE_ISSUER, &pooled_opts), 0,
		     "an SQPOLL SINGLE_ISSUER ring was pooled");
	cr_assert_eq(th_fd_count(), fds, "an SQPOLL ring was kept");
}

/* This thread's effective CAP_IPC_LOCK on or off (it stays permitted). */
static void set_ipc_lock(bool on)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	cr_assert_eq(syscall(SYS_capget, &h, d), 0);
	if (on)
		d[0].effective |= 1u << CAP_IPC_LOCK;
	else
		d[0].effective &= ~(1u << CAP_IPC_LOCK);
	cr_assert_eq(syscall(SYS_capset, &h, d), 0, "capset: %s", strerror(errno));
}

/*
 * The kernel charges a ring's registered buffers to its creator's real
 * uid, unless the creator had CAP_IPC_LOCK: a ring pooled before
 * setresuid() or a dropped capability would charge the old way (root's
 * ring let nobody pin past RLIMIT_MEMLOCK).  Not handed out then.
 */
Test(ringpool, creator_identity_must_match)
{
	struct io_uring ring;
	struct io_uring_params p;

	if (geteuid())
		cr_skip_test("needs root to change the real uid and drop CAP_IPC_LOCK");
	make_pooled(&ring, &p, DEFER);
	hugering_queue_exit(&ring);
	cr_assert_eq(syscall(SYS_setresuid, 65534, -1, -1), 0);	/* this thread's real uid */
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 0, "root's ring handed out to real uid 65534");
	hugering_queue_exit(&ring);
	cr_assert_eq(syscall(SYS_setresuid, 0, -1, -1), 0);
	set_ipc_lock(false);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 0, "a ring made with CAP_IPC_LOCK handed out without it");
	hugering_queue_exit(&ring);
	set_ipc_lock(true);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 1, "control: not pooled: %s", why);
	hugering_queue_exit(&ring);
}

Test(ringpool, shapes_and_flags_must_match)
{
	struct io_uring ring;
	struct io_uring_params p;

	make_pooled(&ring, &p, DEFER);
	hugering_queue_exit(&ring);
	/* Another shape: not that ring. */
	memset(&p, 0, sizeof(p));
	p.flags = DEFER;
	cr_assert_eq(hugering_queue_init_opts(2 * ENTRIES, &ring, &p, &pooled_opts), 0);
	cr_assert_eq(pooled(&ring), 0, "a ring of another size was handed out");
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p, IORING_SETUP_SINGLE_ISSUER);
	cr_assert_eq(pooled(&ring), 0, "a ring with other flags was handed out");
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 1);
	hugering_queue_exit(&ring);
}

/* What io_uring_queue_init(n, &r, 0) makes: pooled too (drained, as NOPs were submitted). */
Test(ringpool, plain_ring_is_pooled)
{
	cr_assert_eq(cycle(0, &pooled_opts), 1, "not pooled: %s", why);
	cr_assert_eq(cycle(0, &pooled_opts), 1, "not pooled again: %s", why);
}

struct other_thread {
	struct io_uring *ring;
	int sock, ready[2], gate[2];
	char rbuf[64];
	unsigned n;
};

/* A socket to receive on (@sv) and the pipes the other thread is told and tells by. */
static void other_thread_setup(struct other_thread *o, struct io_uring *ring, int sv[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	cr_assert_eq(pipe2(o->ready, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(o->gate, O_CLOEXEC), 0);
	o->ring = ring;
	o->sock = sv[0];
}

static void other_thread_done(struct other_thread *o, int sv[2])
{
	int fds[] = { sv[0], sv[1], o->ready[0], o->ready[1], o->gate[0], o->gate[1] };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		close(fds[i]);
}

/* Start @fn on another thread; back once it says it is ready. */
static pthread_t other_thread_start(struct other_thread *o, void *(*fn)(void *))
{
	pthread_t t;
	char c;

	cr_assert_eq(pthread_create(&t, NULL, fn, o), 0);
	cr_assert_eq(read(o->ready[0], &c, 1), 1);
	return t;
}

/* Another thread's requests on a plain ring, then it blocks (alive, in the kernel) until told. */
static void *submit_and_block(void *arg)
{
	struct other_thread *o = arg;
	char c;

	for (unsigned i = 0; i < o->n; i++) {
		io_uring_prep_recv(io_uring_get_sqe(o->ring), o->sock, o->rbuf, sizeof(o->rbuf), 0);
		io_uring_prep_nop(io_uring_get_sqe(o->ring));
	}
	cr_assert_eq(io_uring_submit(o->ring), (int)(2 * o->n));
	cr_assert_eq(write(o->ready[1], "r", 1), 1);
	cr_assert_eq(read(o->gate[0], &c, 1), 1);
	return NULL;
}

/*
 * A plain ring another thread submitted to: the cancel finds its recvs,
 * but their completions are that thread's task work, posted whenever it
 * runs.  The drain barrier waits for them; none may reach the next owner.
 */
Test(ringpool, plain_ring_used_by_another_thread)
{
	struct other_thread o = { .n = 16 };
	struct io_uring ring;
	struct io_uring_params p;
	pthread_t t;
	int sv[2];

	other_thread_setup(&o, &ring, sv);
	for (int round = 0; round < 10; round++) {
		make_pooled(&ring, &p, 0);
		if (round) {
			cr_assert_eq(pooled(&ring), 1, "round %d: not pooled: %s", round, why);
			assert_empty(&ring);
		}
		t = other_thread_start(&o, submit_and_block);
		hugering_queue_exit(&ring);
		make_pooled(&ring, &p, 0);
		cr_assert_eq(pooled(&ring), 1, "round %d: not pooled: %s", round, why);
		assert_no_stray(&ring);
		cr_assert_eq(write(o.gate[1], "g", 1), 1);
		cr_assert_eq(pthread_join(t, NULL), 0);
		hugering_queue_exit(&ring);
	}
	other_thread_done(&o, sv);
}

/* In a vfork-style wait (killable, not interruptible): task work waits too. */
static int sleep_then_exit(void *arg)
{
	struct timespec ts = { .tv_nsec = 150 * 1000000L };

	(void)arg;
	syscall(SYS_nanosleep, &ts, NULL);
	return 0;
}

/* 150 ms where this thread's task work cannot run (its vfork child sleeps). */
static void stall_task_work(void)
{
	size_t size = 64 << 10;
	char *stack = malloc(size);
	pid_t pid;

	cr_assert_not_null(stack);
	pid = clone(sleep_then_exit, stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL);
	cr_assert_gt(pid, 0, "clone: %s", strerror(errno));
	cr_assert_eq(waitpid(pid, NULL, 0), pid);
	free(stack);
}

/*
 * Exit the pooled @ring the other thread @t is involved with, create
 * again, wait for @t: nothing of the last user's reaches the next owner.
 */
static void exit_then_nothing_arrives(struct io_uring *ring, struct io_uring_params *p,
				      unsigned flags, pthread_t t)
{
	hugering_queue_exit(ring);
	make_pooled(ring, p, flags);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(io_uring_cq_ready(ring), 0, "a CQE of the last user's arrived (pooled %d)",
		     pooled(ring));
	assert_no_stray(ring);
	hugering_queue_exit(ring);
}

/* The other thread's timeout, then it waits where task work cannot run. */
static void *submit_and_stall(void *arg)
{
	struct other_thread *o = arg;

	static struct __kernel_timespec ts = { .tv_sec = 30 };

	io_uring_prep_timeout(io_uring_get_sqe(o->ring), &ts, 0, 0);
	cr_assert_eq(io_uring_submit(o->ring), 1);
	cr_assert_eq(write(o->ready[1], "r", 1), 1);
	stall_task_work();
	return NULL;
}

/*
 * The other thread is in a killable wait when the exit cancels its
 * timeout: the cancel finds it and takes it off the list, but its CQE is
 * posted by that thread's task work, which cannot run until the wait ends,
 * 150 ms later.  It must not land in the ring the next create gets (the
 * barrier waits for it, in vain for 50 ms: the ring is closed).
 */
Test(ringpool, plain_ring_with_another_threads_task_work)
{
	struct other_thread o = { .n = 1 };
	struct io_uring ring;
	struct io_uring_params p;
	pthread_t t;
	int sv[2];

	other_thread_setup(&o, &ring, sv);
	make_pooled(&ring, &p, 0);
	t = other_thread_start(&o, submit_and_stall);
	th_sleep_ms(20);	/* sequencing: let it reach the wait */
	exit_then_nothing_arrives(&ring, &p, 0, t);
	other_thread_done(&o, sv);
}

/* A DEFER ring of its own, a file slot to receive into; then a wait where task work cannot run. */
static void *own_ring_then_stall(void *arg)
{
	struct other_thread *o = arg;
	struct io_uring target;
	struct io_uring_params p = { .flags = DEFER };
	char c;

	cr_assert_eq(hugering_queue_init_params(8, &target, &p), 0);
	cr_assert_eq(io_uring_register_files_sparse(&target, 1), 0);
	o->sock = target.ring_fd;	/* the MSG_RING's target */
	cr_assert_eq(write(o->ready[1], "r", 1), 1);
	cr_assert_eq(read(o->gate[0], &c, 1), 1);
	stall_task_work();
	hugering_queue_exit(&target);
	return NULL;
}

/*
 * A MSG_RING passing a file to another thread's DEFER_TASKRUN ring
 * completes only when that thread runs its task work: no cancel reaches
 * it.  The sender's ring is drained, in vain while the receiver sits in a
 * killable wait (150 ms): closed, and the message's CQE never reaches the
 * next owner of a pooled ring.
 */
Test(ringpool, msg_ring_to_a_stalled_ring_is_drained)
{
	struct other_thread o = { .n = 1 };
	struct io_uring ring;
	struct io_uring_params p;
	pthread_t t;
	int sv[2];

	other_thread_setup(&o, NULL, sv);
	t = other_thread_start(&o, own_ring_then_stall);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(io_uring_register_files(&ring, &sv[1], 1), 0);
	cr_assert_eq(write(o.gate[1], "g", 1), 1);
	th_sleep_ms(20);	/* sequencing: let it reach the wait */
	io_uring_prep_msg_ring_fd(io_uring_get_sqe(&ring), o.sock, 0, 0, 0x77, 0);
	cr_assert_eq(io_uring_submit(&ring), 1);
	exit_then_nothing_arrives(&ring, &p, DEFER, t);
	other_thread_done(&o, sv);
}

Test(ringpool, disabled_ring_is_closed)
{
	int fds = th_fd_count();

	cr_assert_eq(cycle(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_R_DISABLED, &pooled_opts), 0);
	cr_assert_eq(th_fd_count(), fds, "an R_DISABLED ring was kept");
}

Test(ringpool, overflowed_ring_is_closed)
{
	struct io_uring ring;
	struct io_uring_params p;
	int fds = th_fd_count();

	make_pooled(&ring, &p, DEFER);
	/* Twice the CQ of NOPs, none reaped: the kernel keeps the rest as overflow. */
	for (unsigned i = 0; i < 2 * p.cq_entries / p.sq_entries + 1; i++) {
		for (unsigned j = 0; j < p.sq_entries; j++)
			io_uring_prep_nop(io_uring_get_sqe(&ring));
		io_uring_submit_and_get_events(&ring);
	}
	cr_assert(*ring.cq.koverflow || (*ring.sq.kflags & IORING_SQ_CQ_OVERFLOW),
		  "no overflow happened");
	hugering_queue_exit(&ring);
	cr_assert_eq(th_fd_count(), fds, "an overflowed ring was kept");
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 0);
	hugering_queue_exit(&ring);
}

/* A personality registered since the ring was made: the ring is closed (ids would differ). */
Test(ringpool, personality_closes_the_ring)
{
	struct io_uring ring;
	struct io_uring_params p;
	int fds = th_fd_count();

	make_pooled(&ring, &p, DEFER);
	cr_assert_gt(io_uring_register_personality(&ring), 0);
	hugering_queue_exit(&ring);
	cr_assert_eq(th_fd_count(), fds, "a ring with a personality left was kept");
	cr_assert(strstr(why, "personality"), "closed for another reason: %s", why);
	cr_assert_eq(cycle(DEFER, &pooled_opts), 1, "control: without it the ring is pooled");
}

/*
 * No fd left for the ring's fdinfo: the ring is made all the same, only
 * not pooled, and the debug log says why.
 */
/* The third fd number an open would get now (the two before it stay free). */
static int third_free_fd(void)
{
	int fd[3];

	for (int i = 0; i < 3; i++) {
		fd[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		cr_assert_geq(fd[i], 0);
	}
	for (int i = 0; i < 3; i++)
		close(fd[i]);
	return fd[2];
}

Test(ringpool, no_fd_for_fdinfo_means_not_pooled)
{
	struct rlimit old, lim;
	struct io_uring ring, warm;
	struct io_uring_params p;
	int ret;

	/* The arena's page and the library's fds exist before the limit. */
	cr_assert_eq(make(&warm, &p, DEFER, NULL), 0);
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)third_free_fd();	/* the ring's fd and hugering's, no third */
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
	why[0] = '\0';
	ret = make(&ring, &p, DEFER, &pooled_opts);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	cr_assert_eq(ret, 0, "create: %s", hugering_last_error());
	cr_assert(strstr(why, "fdinfo"), "no reason logged: \"%s\"", why);
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 0, "a ring without its fdinfo was pooled");
	hugering_queue_exit(&ring);
	hugering_queue_exit(&warm);
}

/*
 * A thousand registered files: fdinfo lists each, past what one read takes.
 * The first read says "files", they are unregistered, and the ring pools.
 */
Test(ringpool, many_registered_files_are_reset)
{
	enum { N = 1000 };
	struct io_uring ring;
	struct io_uring_params p;
	int pipefd[2], *fds = malloc(N * sizeof(int));

	cr_assert_not_null(fds);
	cr_assert_eq(pipe2(pipefd, O_CLOEXEC), 0);
	for (int i = 0; i < N; i++)
		fds[i] = pipefd[i & 1];
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(io_uring_register_files(&ring, fds, N), 0);
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 1, "not pooled: %s", why);
	cr_assert_eq(io_uring_register_files(&ring, fds, N), 0, "files left registered");
	hugering_queue_exit(&ring);
	close(pipefd[0]);
	close(pipefd[1]);
	free(fds);
}

/* The probe's ids wrap after 65535 (the kernel's limit): the ring stays pooled across it. */
Test(ringpool, personality_ids_wrap)
{
	struct io_uring ring;
	struct io_uring_params p;

	make_pooled(&ring, &p, DEFER);
	hugering_queue_exit(&ring);
	for (int i = 0; i < 65536 + 16; i++) {
		make_pooled(&ring, &p, DEFER);
		if (!pooled(&ring))
			cr_assert_fail("cycle %d: a fresh ring, not the pooled one (%s)", i, why);
		hugering_queue_exit(&ring);
	}
}

Test(ringpool, registered_ring_fd_is_closed)
{
	struct io_uring ring;
	struct io_uring_params p;
	int fds = th_fd_count();

	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(io_uring_register_ring_fd(&ring), 1);
	hugering_queue_exit(&ring);
	cr_assert_eq(th_fd_count(), fds, "a ring with a registered fd was kept");
}

/*
 * The program closed the ring's fd and the number now names another file
 * (here another io_uring, or an eventfd): that file is not reset, and the
 * ring is not kept.  The exit closes the number, as liburing's does.
 */
static void fd_number_reused(bool by_ring)
{
	struct io_uring ring, other;
	struct io_uring_params p;
	struct io_uring_buf_ring *br = NULL;
	int num, efd = -1, err;

	make_pooled(&ring, &p, DEFER);
	/* hugering's buffer group 7 on the ring: its reset must not reach the other file. */
	cr_assert_not_null(hugering_setup_buf_ring(&ring, 8, 7, 0, &err), "buf ring: %d", err);
	num = ring.ring_fd;
	if (by_ring) {
		cr_assert_eq(io_uring_queue_init(4, &other, 0), 0);
		br = io_uring_setup_buf_ring(&other, 8, 7, 0, &err);
		cr_assert_not_null(br, "the other ring's buffer group 7: %d", err);
		cr_assert_eq(dup2(other.ring_fd, num), num);
	} else {
		efd = eventfd(0, EFD_CLOEXEC);
		cr_assert_geq(efd, 0);
		cr_assert_eq(dup2(efd, num), num);
	}
	why[0] = '\0';
	hugering_queue_exit(&ring);
	cr_assert(strstr(why, "another file"), "not closed for the fd number: \"%s\"", why);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 0, "a ring whose fd number was reused was kept");
	hugering_queue_exit(&ring);
	if (by_ring) {
		cr_assert_eq(io_uring_free_buf_ring(&other, br, 8, 7), 0,
			     "the other ring's buffer group 7 was unregistered by the reset");
		io_uring_queue_exit(&other);
	} else {
		close(efd);
	}
}

Test(ringpool, fd_number_reused_by_a_ring_is_closed)
{
	fd_number_reused(true);
}

Test(ringpool, fd_number_reused_by_a_file_is_closed)
{
	fd_number_reused(false);
}

/*
 * A ring resized (hugering_ring_resize, 6.13+) is not the ring it was made
 * as, even resized back to its first shape: closed.
 */
Test(ringpool, resized_ring_is_closed)
{
	struct io_uring_params rp = { .sq_entries = 2 * ENTRIES };
	struct hugering_kernel_caps caps;
	struct io_uring ring;
	struct io_uring_params p;
	int fds = th_fd_count();

	cr_assert_eq(hugering_probe_kernel(&caps), 0);
	if (!caps.resize)
		cr_skip_test("kernel %s cannot resize rings (6.13+)", caps.release);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(hugering_ring_resize(&ring, &rp), 0, "%s", hugering_last_error());
	memset(&rp, 0, sizeof(rp));
	rp.sq_entries = ENTRIES;
	cr_assert_eq(hugering_ring_resize(&ring, &rp), 0, "%s", hugering_last_error());
	cr_assert_eq(ring.sq.ring_entries, ENTRIES);
	hugering_queue_exit(&ring);
	cr_assert_eq(th_fd_count(), fds, "a resized ring was kept");
}

/* A read blocked in io-wq is interrupted by the cancel: the ring is pooled, and stays quiet. */
Test(ringpool, blocked_io_wq_read_is_cancelled)
{
	struct io_uring ring;
	struct io_uring_params p;
	struct io_uring_sqe *sqe;
	int pfd[2];
	char b[8];

	cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	make_pooled(&ring, &p, DEFER);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_read(sqe, pfd[0], b, sizeof(b), 0);
	sqe->flags |= IOSQE_ASYNC;
	cr_assert_eq(io_uring_submit(&ring), 1);
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 1, "not pooled: %s", why);
	assert_no_stray(&ring);
	/* The pipe's reader is gone: a write is not consumed by a leftover read. */
	cr_assert_eq(write(pfd[1], "x", 1), 1);
	cr_assert_eq(read(pfd[0], b, 1), 1);
	hugering_queue_exit(&ring);
	close(pfd[0]);
	close(pfd[1]);
}

#define DIRECT_READS 8
#define DIRECT_LEN (128 << 10)

/* A file on a disk, opened O_DIRECT (every read goes to the device); else the test skips. */
static int direct_file(void)
{
	char path[] = "/var/tmp/hugering-pool-XXXXXX";
	static char block[DIRECT_LEN];
	int fd = mkstemp(path), dfd, err;

	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	memset(block, 0x5a, sizeof(block));
	for (int i = 0; i < DIRECT_READS; i++)
		cr_assert_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
	cr_assert_eq(fsync(fd), 0);
	dfd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	err = errno;
	unlink(path);
	close(fd);
	if (dfd < 0)
		cr_skip_test("no O_DIRECT at /var/tmp (%s): no read a device holds", strerror(err));
	return dfd;
}

/* @n reads of the direct file, submitted (user_data 100, 101, ...). */
static void submit_reads(struct io_uring *ring, int fd, char *buf, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

		io_uring_prep_read(sqe, fd, buf + i * DIRECT_LEN, DIRECT_LEN,
				   (uint64_t)i * DIRECT_LEN);
		sqe->user_data = 100 + i;
	}
	cr_assert_eq(io_uring_submit(ring), (int)n);
}

/*
 * Reads the device holds at exit: no cancel reaches them, they end when
 * the disk answers.  Their CQEs must never reach the next owner (whether
 * the ring was pooled depends on the disk answering within 50 ms, so it is
 * not asserted).  Reads reaped before the exit: the barrier runs, finds
 * nothing, and the ring must be pooled.
 */
static void device_reads_in_flight(unsigned flags)
{
	int fd = direct_file();
	char *buf = aligned_alloc(4096, DIRECT_READS * DIRECT_LEN);
	struct io_uring_cqe *cqe;
	struct io_uring ring;
	struct io_uring_params p;

	cr_assert_not_null(buf);
	for (int round = 0; round < 6; round++) {
		make_pooled(&ring, &p, flags);
		if (round)
			assert_no_stray(&ring);
		submit_reads(&ring, fd, buf, DIRECT_READS);
		hugering_queue_exit(&ring);
	}
	make_pooled(&ring, &p, flags);
	submit_reads(&ring, fd, buf, DIRECT_READS);
	cr_assert_eq(io_uring_wait_cqe_nr(&ring, &cqe, DIRECT_READS), 0);
	io_uring_cq_advance(&ring, DIRECT_READS);
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p, flags);
	cr_assert_eq(pooled(&ring), 1, "reads reaped, the barrier found nothing: %s", why);
	assert_no_stray(&ring);
	hugering_queue_exit(&ring);
	close(fd);
	free(buf);
}

Test(ringpool, device_reads_in_flight_defer)
{
	device_reads_in_flight(DEFER);
}

Test(ringpool, device_reads_in_flight_single_issuer)
{
	device_reads_in_flight(IORING_SETUP_SINGLE_ISSUER);
}

/* @n NOPs, submitted and reaped in batches of at most the SQ's size. */
static void nops(struct io_uring *ring, unsigned n)
{
	while (n) {
		unsigned batch = n < ENTRIES ? n : ENTRIES;

		for (unsigned i = 0; i < batch; i++)
			io_uring_prep_nop(io_uring_get_sqe(ring));
		cr_assert_eq(io_uring_submit_and_wait(ring, batch), (int)batch);
		io_uring_cq_advance(ring, batch);
		n -= batch;
	}
}

/*
 * Requests the cancel reaches (a poll-armed recv, a timeout, NOPs) need no
 * drain barrier: the kernel runs a drained request in io-wq, which would
 * start a worker thread ("iou-wrk-") for this thread.
 */
Test(ringpool, cancellable_requests_need_no_drain)
{
	struct io_uring ring;
	struct io_uring_params p;
	int sv[2];
	char rbuf[64];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	static struct __kernel_timespec ts = { .tv_sec = 30 };
	struct io_uring_sqe *sqe;

	make_pooled(&ring, &p, DEFER);
	nops(&ring, 3);
	io_uring_prep_timeout(io_uring_get_sqe(&ring), &ts, 0, 0);
	io_uring_prep_recv(io_uring_get_sqe(&ring), sv[0], rbuf, sizeof(rbuf), 0);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_poll_add(sqe, sv[0], POLLIN);
	cr_assert_eq(io_uring_submit(&ring), 3);
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 1, "not pooled: %s", why);
	cr_assert_eq(th_threads_named("iou-wrk-"), 0, "the reset drained (an io-wq worker started)");
	hugering_queue_exit(&ring);
	close(sv[0]);
	close(sv[1]);
}

/* Linux 6.16+: a drain waits for every request (before, it counted CQEs). */
static bool drain_counts_requests(void)
{
	struct hugering_kernel_caps caps;
	int major = 0, minor = 0;

	cr_assert_eq(hugering_probe_kernel(&caps), 0);
	return sscanf(caps.release, "%d.%d", &major, &minor) == 2 &&
	       (major > 6 || (major == 6 && minor >= 16));
}

/*
 * An SQ that wrapped since the ring was handed out no longer shows what
 * ran: drained (before Linux 6.16, where a drain proves nothing after a
 * zero-copy send that may have been among them, closed).
 */
Test(ringpool, wrapped_sq_is_drained)
{
	struct io_uring ring;
	struct io_uring_params p;

	make_pooled(&ring, &p, DEFER);
	nops(&ring, 3 * ENTRIES);
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p, DEFER);
	if (!drain_counts_requests()) {
		cr_assert_eq(pooled(&ring), 0, "pooled after a wrap on a CQE-counting kernel");
		hugering_queue_exit(&ring);
		return;
	}
	cr_assert_eq(pooled(&ring), 1, "not pooled: %s", why);
	cr_assert_gt(th_threads_named("iou-wrk-"), 0, "no drain barrier ran (no io-wq worker)");
	assert_no_stray(&ring);
	hugering_queue_exit(&ring);
}

/*
 * SQEs got and never submitted reach the slot of a read still in flight
 * (liburing hands out slots up to the kernel's head plus the SQ size):
 * the slot no longer says what was submitted, so the ring is drained.
 */
Test(ringpool, unsubmitted_sqes_over_a_read_in_flight)
{
	int fd = direct_file();
	char *buf = aligned_alloc(4096, DIRECT_LEN);
	struct io_uring ring;
	struct io_uring_params p;

	cr_assert_not_null(buf);
	for (int round = 0; round < 4; round++) {
		struct io_uring_sqe *sqe;
		unsigned got = 0;

		make_pooled(&ring, &p, DEFER);
		if (round)
			assert_no_stray(&ring);
		submit_reads(&ring, fd, buf, 1);
		while ((sqe = io_uring_get_sqe(&ring))) {	/* NOPs, the last over the read's slot */
			io_uring_prep_nop(sqe);
			got++;
		}
		cr_assert_eq(got, ENTRIES);
		hugering_queue_exit(&ring);
	}
	close(fd);
	free(buf);
}

/*
 * A program's own IOSQE_IO_DRAIN leaves the kernel draining: the ring is
 * drained and draining ended, so the next user's NOPs complete inline, in
 * order, as on a fresh ring.
 */
static void program_drain_is_ended(unsigned flags)
{
	struct io_uring ring;
	struct io_uring_params p;

	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;

	make_pooled(&ring, &p, flags);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_nop(sqe);
	sqe->flags |= IOSQE_IO_DRAIN;
	cr_assert_eq(io_uring_submit_and_wait(&ring, 1), 1);
	cr_assert_eq(io_uring_peek_cqe(&ring, &cqe), 0);
	io_uring_cqe_seen(&ring, cqe);
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p, flags);
	cr_assert_eq(pooled(&ring), 1, "not pooled: %s", why);
	th_nops(&ring, 2 * ENTRIES);	/* each batch in order */
	hugering_queue_exit(&ring);
}

Test(ringpool, program_drain_is_ended_defer)
{
	program_drain_is_ended(DEFER);
}


/*
 * A full SQ of timeouts: each cancelled one completes as task work, and
 * since Linux 6.13 a wait runs at most 20 such items unless it wants more
 * CQEs.  Every one must be reaped before the hand-out.
 */
Test(ringpool, many_cancelled_timeouts_are_reaped)
{
	static struct __kernel_timespec ts = { .tv_sec = 30 };
	struct io_uring ring;
	struct io_uring_params p;

	make_pooled(&ring, &p, DEFER);
	for (unsigned i = 0; i < ENTRIES; i++)
		io_uring_prep_timeout(io_uring_get_sqe(&ring), &ts, 0, 0);
	cr_assert_eq(io_uring_submit(&ring), ENTRIES);
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 1, "not pooled: %s", why);
	assert_no_stray(&ring);
	hugering_queue_exit(&ring);
}

/* Whether a ring of @flags, live across a fork (the child exits at once), is pooled at exit. */
static int pooled_after_fork(unsigned flags)
{
	struct io_uring ring;
	struct io_uring_params p;
	pid_t pid;
	int st;

	make_pooled(&ring, &p, flags);
	th_sleep_ms(100);	/* ASan: see fork_child_closes_its_idle_rings */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid)
		_exit(0);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p, flags);
	st = pooled(&ring);
	hugering_queue_exit(&ring);
	return st;
}

/*
 * A child holds the fd of every ring live at the fork: into a plain ring
 * it may submit after the parent's exit, so that ring is not pooled; a
 * SINGLE_ISSUER ring refuses it, and is.
 */
Test(ringpool, plain_ring_live_at_fork_is_not_pooled)
{
	cr_assert_eq(pooled_after_fork(0), 0, "a plain ring a child could submit to was pooled");
	cr_assert_eq(pooled_after_fork(DEFER), 1, "control: not pooled: %s", why);
}

/* A ring that used IOSQE_CQE_SKIP_SUCCESS refuses a drain: closed, not pooled. */
Test(ringpool, skip_success_ring_is_closed)
{
	struct io_uring ring;
	struct io_uring_params p;
	struct io_uring_sqe *sqe;
	int fds = th_fd_count();

	make_pooled(&ring, &p, DEFER);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_nop(sqe);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	cr_assert_eq(io_uring_submit(&ring), 1);
	hugering_queue_exit(&ring);
	cr_assert_eq(th_fd_count(), fds, "kept: %s", why);
	cr_assert(strstr(why, "drain"), "why: %s", why);
}

/*
 * IOPOLL: completions of polled rings are reaped only by polling; NOPs
 * left unreaped, an SQE never submitted.  (No pollable device here: the
 * polled-read path of the reset is not exercised.)
 */
Test(ringpool, iopoll_ring_reset)
{
	unsigned flags = IORING_SETUP_IOPOLL | IORING_SETUP_SINGLE_ISSUER;
	struct io_uring ring;
	struct io_uring_params p1, p2;
	struct io_uring_cqe *cqe;

	make_pooled(&ring, &p1, flags);
	cr_assert(ring.flags & IORING_SETUP_IOPOLL);
	for (int i = 0; i < 4; i++)
		io_uring_prep_nop(io_uring_get_sqe(&ring));
	cr_assert_eq(io_uring_submit(&ring), 4);
	io_uring_prep_nop(io_uring_get_sqe(&ring));
	hugering_queue_exit(&ring);
	make_pooled(&ring, &p2, flags);
	cr_assert_eq(pooled(&ring), 1, "not pooled: %s", why);
	cr_assert_eq(memcmp(&p1, &p2, sizeof(p1)), 0);
	assert_empty(&ring);
	io_uring_prep_nop(io_uring_get_sqe(&ring));
	cr_assert_eq(io_uring_submit(&ring), 1);
	cr_assert_eq(io_uring_wait_cqe(&ring, &cqe), 0);
	io_uring_cqe_seen(&ring, cqe);
	usleep(40000);
	cr_assert_geq(io_uring_enter(ring.ring_fd, 0, 0, IORING_ENTER_GETEVENTS, NULL), 0);
	cr_assert_eq(io_uring_cq_ready(&ring), 0, "a stray CQE arrived");
	hugering_queue_exit(&ring);
}

/* Threads */

struct shared {
	pthread_mutex_t m;
	pthread_cond_t c;
	int step;
	int got_pooled;
	int fds_after;
};

static void wait_step(struct shared *s, int step)
{
	pthread_mutex_lock(&s->m);
	while (s->step < step)
		pthread_cond_wait(&s->c, &s->m);
	pthread_mutex_unlock(&s->m);
}

static void set_step(struct shared *s, int step)
{
	pthread_mutex_lock(&s->m);
	s->step = step;
	pthread_cond_broadcast(&s->c);
	pthread_mutex_unlock(&s->m);
}

static void *pool_one(void *arg)
{
	struct shared *s = arg;
	struct io_uring ring;
	struct io_uring_params p;

	if (make(&ring, &p, DEFER, &pooled_opts))
		return (void *)1;
	hugering_queue_exit(&ring);	/* pooled, for this thread */
	set_step(s, 1);
	wait_step(s, 2);		/* the other thread tried */
	if (make(&ring, &p, DEFER, &pooled_opts))
		return (void *)1;
	s->got_pooled = pooled(&ring);
	hugering_queue_exit(&ring);
	return NULL;
}

Test(ringpool, threads_never_get_each_others_rings)
{
	struct shared s = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0 };
	struct io_uring ring;
	struct io_uring_params p;
	pthread_t t;
	void *r;

	cr_assert_eq(pthread_create(&t, NULL, pool_one, &s), 0);
	wait_step(&s, 1);
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 0, "another thread's SINGLE_ISSUER ring was handed out");
	th_nops(&ring, 4);
	hugering_queue_exit(&ring);	/* pooled, for this thread */
	set_step(&s, 2);
	cr_assert_eq(pthread_join(t, &r), 0);
	cr_assert_null(r);
	cr_assert_eq(s.got_pooled, 1, "control: the owner gets its ring back");
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 1, "control: this thread's own ring");
	hugering_queue_exit(&ring);
}

static void *pool_and_leave(void *arg)
{
	struct io_uring ring;
	struct io_uring_params p;

	(void)arg;
	for (int i = 0; i < 3; i++) {
		struct io_uring more[3];

		for (int j = 0; j <= i; j++)
			if (make(&more[j], &p, DEFER, &pooled_opts))
				return (void *)1;
		for (int j = 0; j <= i; j++)
			hugering_queue_exit(&more[j]);
	}
	if (make(&ring, &p, DEFER, &pooled_opts) || !pooled(&ring))
		return (void *)2;
	hugering_queue_exit(&ring);
	return NULL;
}

Test(ringpool, thread_exit_closes_its_rings)
{
	int fds = th_fd_count();
	pthread_t t;
	void *r;

	cr_assert_eq(pthread_create(&t, NULL, pool_and_leave, NULL), 0);
	cr_assert_eq(pthread_join(t, &r), 0);
	cr_assert_null(r, "thread step %ld failed", (long)(intptr_t)r);
	cr_assert_eq(th_fd_count(), fds, "rings of an exited thread were kept");
}

static void *exit_elsewhere(void *arg)
{
	hugering_queue_exit(arg);
	return NULL;
}

Test(ringpool, exit_on_another_thread_closes)
{
	struct io_uring ring;
	struct io_uring_params p;
	int fds = th_fd_count();
	pthread_t t;

	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pthread_create(&t, NULL, exit_elsewhere, &ring), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert_eq(th_fd_count(), fds, "a ring exited by another thread was kept");
}

/* Bounds */

Test(ringpool, cap_and_idle_time)
{
	struct io_uring rings[10];
	struct io_uring_params p;
	int fds = th_fd_count(), n = 0, kept;

	for (int i = 0; i < 10; i++)
		make_pooled(&rings[i], &p, DEFER);
	for (int i = 0; i < 10; i++)
		hugering_queue_exit(&rings[i]);
	kept = th_fd_count() - fds;
	/* A pooled ring holds three fds: the program's, hugering's, and its fdinfo's. */
	cr_assert_eq(kept, 3 * 8, "%d fds kept: the cap is 8 rings (%s)", kept, why);
	for (int i = 0; i < 10; i++) {
		make_pooled(&rings[i], &p, DEFER);
		n += pooled(&rings[i]);
	}
	cr_assert_eq(n, 8);
	for (int i = 0; i < 10; i++)
		hugering_queue_exit(&rings[i]);
	cr_assert_gt(th_fd_count(), fds);
	/* Idle rings go after about 1 s (the worker); allow 10 s on a busy machine. */
	for (int i = 0; i < 1000 && th_fd_count() > fds; i++)
		usleep(10000);
	cr_assert_eq(th_fd_count(), fds, "idle pooled rings were not closed");
}

/* fork */

Test(ringpool, fork_child_never_gets_parents_rings)
{
	struct io_uring ring;
	struct io_uring_params p;
	int ring_fd, status;
	pid_t pid;

	make_pooled(&ring, &p, DEFER);
	ring_fd = ring.ring_fd;
	hugering_queue_exit(&ring);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int ok;

		/* The child's copy of the pooled ring is closed, and never handed out. */
		ok = fcntl(ring_fd, F_GETFD) < 0 && errno == EBADF;
		if (make(&ring, &p, DEFER, &pooled_opts))
			_exit(2);
		ok = ok && !pooled(&ring);
		th_nops(&ring, 4);
		hugering_queue_exit(&ring);
		_exit(ok ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	/* The parent's ring is still its own, intact. */
	make_pooled(&ring, &p, DEFER);
	cr_assert_eq(pooled(&ring), 1);
	cr_assert_eq(ring.ring_fd, ring_fd);
	assert_no_stray(&ring);
	hugering_queue_exit(&ring);
}

/*
 * The parent's idle job was queued when it forked: the child's copy of it
 * must not look queued, or the child's own pooled rings are never closed.
 */
/* @fd is still the ring of inode @ino (its number may be given to another file once closed). */
static bool still_open(int fd, ino_t ino)
{
	struct stat st;

	return !fstat(fd, &st) && st.st_ino == ino;
}

Test(ringpool, fork_child_closes_its_idle_rings)
{
	struct io_uring ring;
	struct io_uring_params p;
	int status;
	pid_t pid;

	make_pooled(&ring, &p, DEFER);
	hugering_queue_exit(&ring);	/* pooled: the idle job is queued */
	/*
	 * Let the worker thread this started settle in its wait first: under
	 * AddressSanitizer a thread starting up holds the sanitizer's allocator
	 * lock, and a fork then leaves it locked in the child, where the next
	 * thread to start hangs in the sanitizer (seen here with gcc 12).
	 */
	th_sleep_ms(100);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct stat st;
		ino_t ino;
		int fd;

		if (make(&ring, &p, DEFER, &pooled_opts))
			_exit(2);
		fd = ring.ring_fd;
		if (fstat(fd, &st))
			_exit(2);
		ino = st.st_ino;
		hugering_queue_exit(&ring);
		if (!still_open(fd, ino))
			_exit(3);	/* not pooled: nothing to see */
		/* Idle rings go after about 1 s; allow 10 s on a busy machine. */
		for (int i = 0; i < 1000 && still_open(fd, ino); i++)
			usleep(10000);
		_exit(still_open(fd, ino) ? 1 : 0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "child status %#x (1: its idle pooled ring was never closed)", status);
}

/* This process's io_uring descriptors, counted with no malloc (a child forked mid-free may call it). */
static int uring_fd_count(void)
{
	struct linux_dirent64 {
		uint64_t ino;
		int64_t off;
		unsigned short reclen;
		unsigned char type;
		char name[];
	} *d;
	char buf[4096], link[64];
	int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;
	long got;

	if (dfd < 0)
		return -1;
	while ((got = syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < got; off += d->reclen) {
			ssize_t len;

			d = (void *)(buf + off);
			len = readlinkat(dfd, d->name, link, sizeof(link) - 1);
			if (len > 0) {
				link[len] = 0;
				n += !strcmp(link, "anon_inode:[io_uring]");
			}
		}
	}
	close(dfd);
	return n;
}

#define CLOSER_RINGS 8	/* the pool's cap: the more a thread closes, the longer the window */

/* Pool CLOSER_RINGS rings, say so, exit: the thread's exit closes them. */
static void *pool_rings_and_exit(void *arg)
{
	struct io_uring rings[CLOSER_RINGS];
	struct io_uring_params p;
	int *ready = arg, n = 0;

	while (n < CLOSER_RINGS && !make(&rings[n], &p, DEFER, &pooled_opts))
		n++;
	for (int i = 0; i < n; i++)
		hugering_queue_exit(&rings[i]);
	if (write(*ready, &n, sizeof(n)) != sizeof(n))
		abort();
	return NULL;
}

/*
 * A thread's exit closes its pooled rings; the process forks meanwhile. The
 * child must hold none of them (no ring was live at any of the forks): one
 * the closing thread had taken off the pool but not yet closed was left in
 * the child, pinning its memory for the child's life.
 */
Test(ringpool, fork_while_a_thread_closes_its_rings)
{
	int ready[2], forks = 0, leaked = 0, pooled_total = 0;

	cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
	for (int trial = 0; trial < 200 && !leaked; trial++) {
		pthread_t t;
		int n, status;

		cr_assert_eq(pthread_create(&t, NULL, pool_rings_and_exit, &ready[1]), 0);
		cr_assert_eq(read(ready[0], &n, sizeof(n)), (ssize_t)sizeof(n));
		pooled_total += n;
		do {
			pid_t pid = fork();

			cr_assert_geq(pid, 0);
			if (pid == 0)
				_exit(uring_fd_count() == 0 ? 0 : 1);
			cr_assert_eq(waitpid(pid, &status, 0), pid);
			forks++;
			leaked += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
		} while (pthread_tryjoin_np(t, NULL) == EBUSY);
	}
	close(ready[0]);
	close(ready[1]);
	cr_assert_gt(pooled_total, 0, "no ring was made");
	cr_assert_eq(leaked, 0, "%d of %d children held a ring their parent was closing", leaked,
		     forks);
	cr_assert_eq(uring_fd_count(), 0, "the closing thread left rings open");
}
