/* SPDX-License-Identifier: MIT */
/*
 * The pool of live rings (HUGERING_INIT_POOLED, opt-in): at exit a ring is
 * drained and reset instead of closed, and the next create of the same
 * shape on the same thread gets it back.  Only a ring that can be made
 * indistinguishable from a fresh one is kept; any doubt closes it.
 *
 * A ring is pooled for its creating thread only, and reset on that thread.
 * With SINGLE_ISSUER the kernel lets no other thread submit to (or register
 * on) it, so every request it had was that thread's and the task work that
 * posts its completions runs on the thread resetting: once the cancel has
 * found nothing, only what no cancel reaches (a read the device holds) can
 * still complete, and a drain barrier waits for that (drain_barrier).  A
 * ring any thread may use is drained whenever anything was submitted since
 * it was handed out: a completion of another thread's request, cancelled
 * or not, is posted by that thread's task work, whenever it runs.
 *
 * The pooled rings sit in one list under a lock, each tagged with its
 * owner's token: a number given to a thread at its first use and never
 * given again (a later thread with the same TID gets a new one).  A pthread
 * key's destructor closes a thread's rings at its exit; the background
 * worker closes rings idle for POOL_IDLE_MS; a forked child closes its
 * copies (the fork handler), so it never hands out its parent's rings.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define POOL_MAX 8		/* rings kept per process */
#define POOL_IDLE_MS 1000	/* an idle ring is closed after this */
#define PERSONALITY_MAX 65535	/* the kernel's last personality id before it wraps */
#define DRAIN_MS 50		/* cancelling and reaping may take this long, then: close */

struct pooled {
	struct pooled *next;
	struct io_uring ring;		/* as reset, ready to hand out */
	struct hr_ring_rec *rec;	/* out of the registry while pooled */
	long since;			/* hr_now_ms() at exit */
	const void *closer;		/* on the closing list: whose close_list closes it */
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pooled *pool;
/*
 * Rings unlinked from the pool whose descriptors are not yet closed: the
 * fork handler closes the child's copies of these too, so a fork while a
 * thread closes its rings never leaves one in the child.
 */
static struct pooled *closing;
static unsigned pool_n;		/* changed under the lock; read without it as a hint */
static uint64_t tokens;
static __thread uint64_t my_token;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static bool key_ok;
static __thread bool key_set;

static void idle_run(struct hr_job *j);
static struct hr_job idle_job = { .run = idle_run };

static uint64_t thread_token(void)
{
	if (!my_token)
		my_token = __atomic_add_fetch(&tokens, 1, __ATOMIC_RELAXED);
	return my_token;
}

/* While the ring is open: a resizable ring gives its memory back clean. */
static bool close_begin(const struct io_uring *ring, const struct hr_ring_rec *rec)
{
	return rec && rec->user_mem && rec->info.recycle == HUGERING_RECYCLE_RESIZE &&
	       hr_resize_away(ring, rec->ref_fd);
}

/* The rest; descriptors the caller closed already are -1 (liburing skips a -1 ring_fd). */
static void close_end(struct io_uring *ring, struct hr_ring_rec *rec, bool clean)
{
	/*
	 * liburing closes the fd (and unregisters a registered ring fd); it
	 * leaves application memory alone.  The kernel may write the ring
	 * memory once more during its asynchronous teardown: the arena never
	 * gives that memory to another ring (unless resized away above).
	 * liburing < 2.8 would unmap it: see hr_queue_exit_app_mem (compat.h).
	 */
	if (rec && rec->user_mem) {
		hr_queue_exit_app_mem(ring);
		if (rec->ref_fd >= 0)
			close(rec->ref_fd);
		hr_arena_free(&rec->slot, clean);
	} else {
		io_uring_queue_exit(ring);
	}
	hr_ring_rec_free(rec);
}

void hr_ring_close(struct io_uring *ring, struct hr_ring_rec *rec)
{
	close_end(ring, rec, close_begin(ring, rec));
}

/* The first ring on the closing list that @closer closes, or NULL. */
static struct pooled *next_to_close(const void *closer)
{
	struct pooled *e;

	pthread_mutex_lock(&pool_lock);
	for (e = closing; e && e->closer != closer; e = e->next)
		;
	pthread_mutex_unlock(&pool_lock);
	return e;
}

/*
 * Close @e's descriptors (ring, reference, fdinfo) and take it off the
 * closing list in one step, as the fork handler sees them.
 */
static void close_fds(struct pooled *e)
{
	pthread_mutex_lock(&pool_lock);
	for (struct pooled **pp = &closing; *pp; pp = &(*pp)->next) {
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	}
	close(e->ring.ring_fd);
	e->ring.ring_fd = e->ring.enter_ring_fd = -1;
	if (e->rec->ref_fd >= 0)
		close(e->rec->ref_fd);
	e->rec->ref_fd = -1;
	if (e->rec->pool.info_fd >= 0)
		close(e->rec->pool.info_fd);
	e->rec->pool.info_fd = -1;
	pthread_mutex_unlock(&pool_lock);
}

/* Close the rings on the closing list tagged @closer. */
static void close_list(const void *closer)
{
	struct pooled *e;

	while ((e = next_to_close(closer))) {
		bool clean = close_begin(&e->ring, e->rec);

		close_fds(e);
		close_end(&e->ring, e->rec, clean);
		free(e);
	}
}

/*
 * Close every ring @pick chooses, the closing itself unlocked; returns when
 * the next ring left in the pool falls idle (0: none left).  The rings wait
 * on the closing list, tagged with this call's frame, no other's.
 */
static long close_if(bool (*pick)(const struct pooled *e, uint64_t arg), uint64_t arg)
{
	long next_due = 0;
	struct pooled *e;

	pthread_mutex_lock(&pool_lock);
	for (struct pooled **pp = &pool; (e = *pp);) {
		if (pick(e, arg)) {
			*pp = e->next;
			e->next = closing;
			e->closer = &next_due;
			closing = e;
			__atomic_sub_fetch(&pool_n, 1, __ATOMIC_RELAXED);
		} else {
			if (!next_due || e->since + POOL_IDLE_MS < next_due)
				next_due = e->since + POOL_IDLE_MS;
			pp = &e->next;
		}
	}
	pthread_mutex_unlock(&pool_lock);
	close_list(&next_due);
	return next_due;
}

static bool is_idle(const struct pooled *e, uint64_t now)
{
	return e->since + POOL_IDLE_MS <= (long)now;
}

static bool owned_by(const struct pooled *e, uint64_t token)
{
	return e->rec->pool.owner == token;
}

/* The worker: close rings idle too long; come back when the next one is due. */
static void idle_run(struct hr_job *j)
{
	long next = close_if(is_idle, (uint64_t)hr_now_ms());

	if (next)
		hr_worker_post_at(j, next);
}

/* Thread exit: its rings can go to no other thread. */
static void thread_gone(void *token)
{
	close_if(owned_by, (uint64_t)(uintptr_t)token);
}

static void make_key(void)
{
	key_ok = pthread_key_create(&exit_key, thread_gone) == 0;
}

/* ------------------------------------------------------------------ */
/* Creation                                                            */
/* ------------------------------------------------------------------ */

/*
 * Who a ring charges: the kernel notes at creation the creator's real uid
 * (ctx->user) and charges it for the ring's registered buffers, unless the
 * creator had CAP_IPC_LOCK.  A ring made before setresuid() or a dropped
 * capability goes on charging the old way; a fresh one would not.
 */
static void who_charges(uid_t *ruid, bool *ipc_lock)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	*ruid = getuid();
	*ipc_lock = !syscall(SYS_capget, &h, d) && (d[0].effective & (1u << CAP_IPC_LOCK));
}

static bool shape_poolable(const struct io_uring_params *want, const struct hugering_init_opts *o)
{
	unsigned never = IORING_SETUP_SQPOLL | IORING_SETUP_R_DISABLED | IORING_SETUP_ATTACH_WQ |
			 IORING_SETUP_REGISTERED_FD_ONLY;

	return o && (o->flags & HUGERING_INIT_POOLED) && !o->n_iopoll_fds &&
	       !(want->flags & never);
}

/*
 * The fdinfo of the program's fd number, kept open: read again at each
 * reset (a read from offset 0 shows the file at that number now), it says
 * both that the number is still this ring and what the kernel holds.
 */
static int open_fdinfo(int fd_num)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/thread-self/fdinfo/%d", fd_num);
	return open(path, O_RDONLY | O_CLOEXEC);
}

void hr_pool_note(struct io_uring *ring, unsigned entries, const struct io_uring_params *want,
		  const struct io_uring_params *got, int policy, const struct hugering_init_opts *o)
{
	struct hr_pool_rec pr;
	struct stat st;
	int fd;

	if (!shape_poolable(want, o))
		return;
	fd = hr_registry_ref_fd(ring->sq.sqes);
	if (fd < 0 || fstat(fd, &st))
		return;		/* kernel-mapped: no reference of ours to check the fd by */
	memset(&pr, 0, sizeof(pr));
	pr.info_fd = open_fdinfo(ring->ring_fd);
	if (pr.info_fd < 0) {
		hr_log(HUGERING_LOG_DEBUG, "ring not pooled: /proc/thread-self/fdinfo/%d: %s",
		       ring->ring_fd, strerror(errno));
		return;
	}
	pr.fd_num = ring->ring_fd;
	pr.ino = st.st_ino;
	pr.candidate = true;
	pr.pers_next = 1;	/* a fresh ring's first personality id */
	pr.sq_head = *ring->sq.khead;
	pr.entries = entries;
	pr.want = *want;
	pr.policy = policy;
	pr.arena = o->arena;
	pr.page_size = o->page_size;
	pr.numa_node = o->numa_node;
	pr.got = *got;
	pr.int_flags = ring->int_flags;
	pr.owner = thread_token();
	who_charges(&pr.ruid, &pr.ipc_lock);
	if (!hr_registry_note_pool(ring->sq.sqes, &pr))
		close(pr.info_fd);
}

/* The ring is no longer as it was made (resized): never pooled, its fdinfo closed. */
void hr_pool_forget(struct hr_ring_rec *rec)
{
	rec->pool.candidate = false;
	if (rec->pool.info_fd >= 0)
		close(rec->pool.info_fd);
	rec->pool.info_fd = -1;
}

/* ------------------------------------------------------------------ */
/* Reuse                                                               */
/* ------------------------------------------------------------------ */

static bool same_shape(const struct hr_pool_rec *pr, unsigned entries,
		       const struct io_uring_params *want, int policy,
		       const struct hugering_init_opts *o)
{
	unsigned f = want->flags;

	return pr->entries == entries && pr->want.flags == f &&
	       (!(f & IORING_SETUP_CQSIZE) || pr->want.cq_entries == want->cq_entries) &&
	       pr->policy == policy && pr->arena == o->arena && pr->page_size == o->page_size &&
	       pr->numa_node == o->numa_node;
}

int hr_pool_get(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		const struct io_uring_params *want, int policy,
		const struct hugering_init_opts *o)
{
	struct pooled *e = NULL;
	uint64_t me;
	uid_t ruid;
	bool ipc_lock;

	if (!shape_poolable(want, o) || !__atomic_load_n(&pool_n, __ATOMIC_RELAXED))
		return -ENOENT;
	me = thread_token();
	who_charges(&ruid, &ipc_lock);
	pthread_mutex_lock(&pool_lock);
	for (struct pooled **pp = &pool; *pp; pp = &(*pp)->next) {
		const struct hr_pool_rec *pr = &(*pp)->rec->pool;

		if (pr->owner == me && pr->ruid == ruid && pr->ipc_lock == ipc_lock &&
		    same_shape(pr, entries, want, policy, o)) {
			e = *pp;
			*pp = e->next;
			__atomic_sub_fetch(&pool_n, 1, __ATOMIC_RELAXED);
			break;
		}
	}
	pthread_mutex_unlock(&pool_lock);
	if (!e)
		return -ENOENT;
	*ring = e->ring;
	*p = e->rec->pool.got;
	e->rec->info.pooled = 1;
	hr_registry_add(e->rec);
	free(e);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Reset                                                               */
/* ------------------------------------------------------------------ */

/* No overflowed CQ, no SQEs the kernel dropped: counters no reset clears. */
static bool counters_clean(const struct io_uring *ring)
{
	return !(ring->cq.koverflow && *ring->cq.koverflow) &&
	       !(ring->sq.kdropped && *ring->sq.kdropped) &&
	       !(__atomic_load_n(ring->sq.kflags, __ATOMIC_ACQUIRE) & IORING_SQ_CQ_OVERFLOW);
}

/*
 * Nothing liburing shows says this ring is not as made.  Whether the
 * program's fd number is still this ring (not closed and reused) is for
 * fdinfo to say; until then the kernel is only asked through our own fd.
 */
static bool untouched(const struct io_uring *ring, const struct hr_ring_rec *rec)
{
	const struct hr_pool_rec *pr = &rec->pool;

	return pr->candidate && pr->info_fd >= 0 && pr->owner == thread_token() &&
	       ring->int_flags == pr->int_flags && ring->ring_fd == pr->fd_num &&
	       ring->enter_ring_fd == ring->ring_fd && rec->ref_fd >= 0 &&
	       ring->flags == pr->got.flags && ring->sq.ring_entries == pr->got.sq_entries &&
	       ring->cq.ring_entries == pr->got.cq_entries && ring->sq.sqes == rec->key &&
	       counters_clean(ring);
}

/* The drain barrier's CQE, told from the program's by its user_data. */
struct barrier {
	uint64_t marker;
	bool seen;
	int res;
};

/* Every CQE there is, seen (the program's are dropped, as a close would); @b's noted; how many. */
static unsigned consume(struct io_uring *ring, struct barrier *b)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;

	io_uring_for_each_cqe(ring, head, cqe) {
		if (b && cqe->user_data == b->marker) {
			b->seen = true;
			b->res = cqe->res;
		}
		n++;
	}
	io_uring_cq_advance(ring, n);
	return n;
}

/* Submit @to_submit, wait up to @ms (0: not at all) for @min_complete CQEs; the kernel's answer. */
static int submit_and_wait(int fd, unsigned to_submit, unsigned min_complete, long ms)
{
	struct __kernel_timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	struct io_uring_getevents_arg arg = {
		.sigmask_sz = _NSIG / 8,
		.ts = (uint64_t)(uintptr_t)&ts,
	};

	return io_uring_enter2((unsigned)fd, to_submit, min_complete,
			       IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, (sigset_t *)&arg,
			       sizeof(arg));
}

#define QUICK_PASSES 4

/*
 * Completions waiting as task work posted and seen.  With DEFER_TASKRUN
 * they run only in a wait, and since Linux 6.13 a wait runs at most 20
 * items unless it wants more CQEs (a cancelled timeout or io-wq request
 * completes as task work the next cancel no longer finds).  Quick passes
 * that want none, until one brings no CQE; after a few, a wait that wants
 * a full CQ with a zero timeout runs everything at once (it then sleeps
 * until that timeout fires: several µs, so only when there is much).
 */
static void reap(struct io_uring *ring, int fd, struct barrier *b)
{
	if (!(ring->flags & IORING_SETUP_DEFER_TASKRUN)) {
		consume(ring, b);
		return;
	}
	for (int i = 0; i < QUICK_PASSES; i++) {
		io_uring_enter((unsigned)fd, 0, 0, IORING_ENTER_GETEVENTS, NULL);
		if (!consume(ring, b))
			return;
	}
	do
		submit_and_wait(fd, 0, ring->cq.ring_entries, 0);
	while (consume(ring, b));
}

/* SQEs got but not submitted: gone, as if never written. */
static void drop_unsubmitted(struct io_uring *ring)
{
	unsigned head = io_uring_smp_load_acquire(ring->sq.khead);

	io_uring_smp_store_release(ring->sq.ktail, head);
	ring->sq.sqe_head = ring->sq.sqe_tail = head;
}

#define CANCEL_NAP_US 50	/* between cancels once a request keeps being found */

/*
 * Cancel every request, reaping as they end, until the kernel finds none
 * (0; -ENOENT on kernels that say so); -ETIME when some will not end by
 * @deadline.  A request running in io-wq is counted as cancelled while its
 * worker is interrupted: it is found again until it has ended.  With
 * CANCEL_ANY the kernel never waits for it (it counts, it does not say
 * -EALREADY), so after a few rounds each one naps instead of spinning.
 */
static int cancel_all(struct io_uring *ring, int fd, long deadline, struct barrier *b)
{
	for (unsigned round = 0;; round++) {
		struct io_uring_sync_cancel_reg reg;
		long left = deadline - hr_now_ms();
		int ret;

		if (left <= 0)
			return -ETIME;
		memset(&reg, 0, sizeof(reg));
		reg.flags = IORING_ASYNC_CANCEL_ANY;
		reg.fd = -1;
		reg.timeout.tv_sec = left / 1000;
		reg.timeout.tv_nsec = (left % 1000) * 1000000L;
		/* With CANCEL_ANY the kernel cancels all it finds and says how many. */
		ret = hr_sys_io_uring_register(fd, IORING_REGISTER_SYNC_CANCEL, &reg, 1);
		reap(ring, fd, b);
		if (ret == 0 || ret == -ENOENT)
			return 0;
		/* -EALREADY/-ETIME: running, not done in time; -EINTR: again, until the deadline. */
		if (ret < 0 && ret != -EALREADY && ret != -ETIME && ret != -EINTR)
			return ret;
		if (round >= 2)
			usleep(CANCEL_NAP_US);
	}
}

/* IOPOLL: polled requests are not cancellable; poll until none is left. */
static int poll_all(struct io_uring *ring, int fd, long deadline)
{
	if (!(ring->flags & IORING_SETUP_IOPOLL))
		return 0;
	while (hr_now_ms() < deadline) {
		unsigned before = io_uring_cq_ready(ring);
		int ret = io_uring_enter((unsigned)fd, 0, 1, IORING_ENTER_GETEVENTS, NULL);

		if (ret < 0 && ret != -EINTR && ret != -EAGAIN)
			return ret;
		/* With min_complete 1 the kernel returns without a CQE only when nothing is polled. */
		if (ret >= 0 && io_uring_cq_ready(ring) == before)
			return 0;
		reap(ring, fd, NULL);
	}
	return -ETIME;
}

#define BARRIER_SLICE_MS 5	/* between two cancels while the barrier waits */

/* A user_data the program's requests are not expected to have: this record's, counted. */
static uint64_t barrier_marker(struct hr_pool_rec *pr)
{
	return 0x6875676572696e67ULL ^ (uint64_t)(uintptr_t)pr ^ (++pr->barriers << 40);
}


/*
 * Opcodes whose requests end inline, are found by the sync cancel (io-wq
 * work, polls, timeouts) or complete nothing later in this ring: after
 * cancel_all none of them is in flight.  Not listed, so drained: reads and
 * writes (a file's are held by the device), zero-copy sends (their
 * notification comes when the network lets go), MSG_RING (passing a file
 * to a DEFER_TASKRUN ring completes as that ring's owner's task work),
 * uring_cmd, and every opcode newer than liburing 2.5's header.
 */
static bool cancel_reaches(unsigned op)
{
	switch (op) {
	case IORING_OP_NOP: case IORING_OP_POLL_ADD: case IORING_OP_POLL_REMOVE:
	case IORING_OP_TIMEOUT: case IORING_OP_TIMEOUT_REMOVE: case IORING_OP_LINK_TIMEOUT:
	case IORING_OP_ASYNC_CANCEL: case IORING_OP_FILES_UPDATE:
	case IORING_OP_PROVIDE_BUFFERS: case IORING_OP_REMOVE_BUFFERS:
	/* sockets: done inline or waiting on a poll the cancel finds */
	case IORING_OP_SENDMSG: case IORING_OP_RECVMSG: case IORING_OP_SEND: case IORING_OP_RECV:
	case IORING_OP_ACCEPT: case IORING_OP_CONNECT: case IORING_OP_SHUTDOWN:
	case IORING_OP_SOCKET:
	/* done inline or in io-wq, where the cancel finds them until they end */
	case IORING_OP_FSYNC: case IORING_OP_SYNC_FILE_RANGE: case IORING_OP_FALLOCATE:
	case IORING_OP_OPENAT: case IORING_OP_OPENAT2: case IORING_OP_CLOSE: case IORING_OP_STATX:
	case IORING_OP_FADVISE: case IORING_OP_MADVISE: case IORING_OP_EPOLL_CTL:
	case IORING_OP_SPLICE: case IORING_OP_TEE: case IORING_OP_RENAMEAT:
	case IORING_OP_UNLINKAT: case IORING_OP_MKDIRAT: case IORING_OP_SYMLINKAT:
	case IORING_OP_LINKAT: case IORING_OP_FSETXATTR: case IORING_OP_SETXATTR:
	case IORING_OP_FGETXATTR: case IORING_OP_GETXATTR:
		return true;
	default:
		return false;
	}
}

/*
 * Before Linux 6.16 the kernel released a drained request by counting
 * CQEs against SQEs, and a zero-copy send's notification was not counted:
 * on a ring that ever sent one, a drain can start while a request is still
 * in flight.  From 6.16 it waits until every request is freed.
 */
static bool drain_counts_requests(void)
{
	int major = 0, minor = 0;

	return sscanf(hr_caps()->release, "%d.%d", &major, &minor) == 2 &&
	       (major > 6 || (major == 6 && minor >= 16));
}

enum drain_need {
	DRAIN_NONE,		/* nothing can still be in flight */
	DRAIN_BARRIER,		/* the barrier can tell */
	DRAIN_UNPROVABLE,	/* not even the barrier: close */
};

/*
 * Whether a request submitted since the ring was handed out (SQ head then:
 * @from) may still be in flight where no cancel reaches.  The SQEs the
 * kernel consumed are still in the SQ, read through the SQ array as the
 * kernel did (liburing leaves it as set up), unless the SQ wrapped since,
 * or SQEs got and not submitted (up to @sqe_tail) reached their slots.
 * Links and drains are drained too: a cancelled or completed head (or a
 * deferred request) issues the next one when its task work runs, after
 * the last cancel.  Without SINGLE_ISSUER another thread may have
 * submitted: even a cancelled poll completes as that thread's task work.
 */
static enum drain_need needs_barrier(const struct io_uring *ring, unsigned from, unsigned sqe_tail)
{
	unsigned to = io_uring_smp_load_acquire(ring->sq.khead);
	unsigned shift = ring->flags & IORING_SETUP_SQE128 ? 1 : 0;
	unsigned chained = IOSQE_IO_LINK | IOSQE_IO_HARDLINK | IOSQE_IO_DRAIN |
			   IOSQE_CQE_SKIP_SUCCESS;
	bool counted = drain_counts_requests();
	enum drain_need need;

	if (to == from)
		return DRAIN_NONE;
	/* wrapped, or an SQ layout not known here (IORING_SETUP_SQE_MIXED, bit 19, and later) */
	if (to - from > ring->sq.ring_entries || sqe_tail - from > ring->sq.ring_entries ||
	    ring->flags >> 19)
		return counted ? DRAIN_BARRIER : DRAIN_UNPROVABLE;
	need = ring->flags & IORING_SETUP_SINGLE_ISSUER ? DRAIN_NONE : DRAIN_BARRIER;
	for (unsigned h = from; h != to; h++) {
		unsigned idx = h & ring->sq.ring_mask;
		const struct io_uring_sqe *sqe;

		if (!(ring->flags & IORING_SETUP_NO_SQARRAY))
			idx = ring->sq.array[idx];
		if (idx >= ring->sq.ring_entries)
			return DRAIN_UNPROVABLE;
		sqe = &ring->sq.sqes[idx << shift];
		if (!counted && (sqe->opcode == IORING_OP_SEND_ZC ||
				 sqe->opcode == IORING_OP_SENDMSG_ZC))
			return DRAIN_UNPROVABLE;
		/* CQE_SKIP_SUCCESS disables draining for good: the barrier fails, the ring closes */
		if (!cancel_reaches(sqe->opcode) || (sqe->flags & chained))
			need = DRAIN_BARRIER;
	}
	return need;
}

/*
 * One NOP with @sqe_flags, written and made visible to the kernel (not
 * submitted): its marker in @b.  By hand, as io_uring_submit would enter
 * through the program's fd number, not yet known to be the ring.
 */
static int nop_publish(struct io_uring *ring, struct hr_ring_rec *rec, unsigned sqe_flags,
		       struct barrier *b, unsigned *tail)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		return -EBUSY;
	*b = (struct barrier){ .marker = barrier_marker(&rec->pool) };
	io_uring_prep_nop(sqe);
	sqe->flags = (uint8_t)sqe_flags;
	sqe->user_data = b->marker;
	*tail = ring->sq.sqe_tail;
	io_uring_smp_store_release(ring->sq.ktail, *tail);
	ring->sq.sqe_head = *tail;
	return 0;
}

/*
 * The published NOP (SQ tail @tail) submitted through hugering's own fd
 * and waited for until @deadline, cancelling again between slices: its
 * result, or -ETIME, or the kernel's error.
 */
static int nop_wait(struct io_uring *ring, struct hr_ring_rec *rec, unsigned tail,
		    struct barrier *b, long deadline)
{
	for (;;) {
		long left = deadline - hr_now_ms();
		bool sent = io_uring_smp_load_acquire(ring->sq.khead) == tail;
		int ret;

		if (left <= 0)
			return -ETIME;
		ret = submit_and_wait(rec->ref_fd, sent ? 0 : 1, 1,
				      left < BARRIER_SLICE_MS ? left : BARRIER_SLICE_MS);
		consume(ring, b);
		if (b->seen)
			return b->res;
		if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			return ret;
		/* A request that went from io-wq to poll since the last cancel: cancel again. */
		if (ret == -ETIME && cancel_all(ring, rec->ref_fd, deadline, b))
			return -ETIME;
		if (b->seen)
			return b->res;
	}
}

#define END_DRAIN_TRIES 8

/*
 * The kernel keeps draining on after a drained request until a request
 * without the flag finds nothing deferred and every earlier request freed
 * (a request freed by task work that has not run yet counts); until then
 * it sends every request to io-wq, so the next user's first requests
 * would run (and complete out of order) unlike on a fresh ring.  A NOP
 * whose CQE is there when the submit returns, without waiting, ran inline:
 * draining is off.  With DEFER_TASKRUN that is a proof (a request sent on
 * completes as task work, which only a wait runs); without it a NOP sent
 * to io-wq would have to complete before this thread reads the CQ right
 * after the syscall.  -EBUSY when draining stays on (closed).
 */
static int end_draining(struct io_uring *ring, struct hr_ring_rec *rec, long deadline)
{
	for (int i = 0; i < END_DRAIN_TRIES; i++) {
		struct barrier b;
		unsigned tail;
		int ret = nop_publish(ring, rec, 0, &b, &tail);

		if (ret)
			return ret;
		ret = io_uring_enter((unsigned)rec->ref_fd, 1, 0, 0, NULL);
		consume(ring, &b);
		if (b.seen)
			return b.res;
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			return ret;
		ret = nop_wait(ring, rec, tail, &b, deadline);
		if (ret && ret != -ECANCELED)	/* cancelled in io-wq by nop_wait: again */
			return ret;
	}
	return -EBUSY;
}

/*
 * Requests no cancel reaches end when they end: a read or write the device
 * holds, a zero-copy send's notification.  Their CQEs would reach the next
 * owner.  A NOP with IOSQE_IO_DRAIN starts only once every request before
 * it has completed, so its CQE says none is left.  Not needed when every
 * SQE submitted since the ring was handed out is of a kind the cancel
 * reaches (needs_barrier).  The kernel runs a drained request in io-wq,
 * and the one after it (end_draining): about 7 µs in all, and the thread's
 * io-wq starts a worker if it had none.
 * 0, or -ETIME (still in flight at @deadline), -EBUSY (no SQE, draining
 * stays on), -ENOTRECOVERABLE (nothing can prove it), the NOP's error
 * (-EOPNOTSUPP: the ring used IOSQE_CQE_SKIP_SUCCESS, which disables
 * draining).
 */
static int drain_barrier(struct io_uring *ring, struct hr_ring_rec *rec, unsigned sqe_tail,
			 long deadline)
{
	struct barrier b;
	unsigned tail;
	int ret;

	switch (needs_barrier(ring, rec->pool.sq_head, sqe_tail)) {
	case DRAIN_NONE:
		return 0;
	case DRAIN_UNPROVABLE:
		return -ENOTRECOVERABLE;
	case DRAIN_BARRIER:
		break;
	}
	ret = nop_publish(ring, rec, IOSQE_IO_DRAIN, &b, &tail);
	if (!ret)
		ret = nop_wait(ring, rec, tail, &b, deadline);
	/*
	 * Cancelled by nop_wait's own cancel: the cancel finds it only in
	 * io-wq, where the kernel sends it once every earlier request has
	 * completed -- what the barrier is for.
	 */
	if (ret == -ECANCELED)
		ret = 0;
	return ret ? ret : end_draining(ring, rec, deadline);
}

/* One unregistration; what "there was none" looks like (or an op this kernel lacks) is fine. */
static bool unreg(int fd, unsigned op, void *arg, unsigned nr, bool maybe_unknown)
{
	int ret = hr_sys_io_uring_register(fd, op, arg, nr);

	return ret >= 0 || ret == -ENXIO || (maybe_unknown && ret == -EINVAL);
}

/*
 * Personalities: the kernel gives their ids in turn (1, 2, ... 65535, then
 * 1 again) and this kernel's fdinfo no longer lists them.  A probe
 * registered and unregistered at each reset must get the id after the last
 * probe's: any other means the program registered one since (left or not),
 * and the ring is not like fresh.
 */
static bool no_personality(int fd, struct hr_pool_rec *pr)
{
	int id = hr_sys_io_uring_register(fd, IORING_REGISTER_PERSONALITY, NULL, 0);

	if (id < 0)
		return false;
	if (hr_sys_io_uring_register(fd, IORING_UNREGISTER_PERSONALITY, NULL, (unsigned)id) < 0)
		return false;
	if (id != pr->pers_next)
		return false;
	pr->pers_next = id < PERSONALITY_MAX ? id + 1 : 1;
	return true;
}

/* What fdinfo says against a fresh ring, when it is one of these (compared by address). */
static const char DIRT_REGISTERED[] = "files, buffers or NAPI";
static const char DIRT_POLL[] = "a poll or an overflowed CQE";
static const char DIRT_OTHER_FILE[] = "the fd number is another file now";

/*
 * What the ring holds that fdinfo does not show, undone: personalities
 * (probed), the eventfd, the clock.  Files, buffers and NAPI, which it
 * shows, are undone only when it does (undo_shown).  The io-wq affinity
 * and max workers are not the ring's: without SQPOLL (never pooled) the
 * kernel sets them on the calling thread's io-wq, which outlives the ring,
 * so a close leaves them as the program set them and so does the reset.
 * The ring keeps the max workers too, for a thread whose first io_uring
 * use is this ring; nothing undoes that (README: only a plain ring shared
 * with a brand-new thread could show it).
 */
static bool undo_unseen(struct hr_ring_rec *rec)
{
	int fd = rec->ref_fd;
	struct { uint32_t clockid, flags, resv[2]; } clk = { CLOCK_MONOTONIC, 0, { 0, 0 } };

	/* CLOCK: Linux 6.10 (older kernels: -EINVAL, and nothing to undo) */
	return no_personality(fd, &rec->pool) &&
	       unreg(fd, IORING_UNREGISTER_EVENTFD, NULL, 0, false) &&
	       unreg(fd, IORING_REGISTER_CLOCK, &clk, 0, true);
}

static bool undo_shown(int fd)
{
	/* NAPI: Linux 6.9 (older kernels: -EINVAL, and nothing to undo) */
	return unreg(fd, IORING_UNREGISTER_FILES, NULL, 0, false) &&
	       unreg(fd, IORING_UNREGISTER_BUFFERS, NULL, 0, false) &&
	       unreg(fd, IORING_UNREGISTER_NAPI, NULL, 1, true);
}

/* "0" and nothing after it. */
static bool is_zero(const char *v)
{
	return v[0] == '0' && (v[1] == '\n' || !v[1]);
}

/* Which fdinfo fields were seen (all must be). */
enum {
	SEEN_INO = 1 << 0, SEEN_SQ_HEAD = 1 << 1, SEEN_SQ_TAIL = 1 << 2, SEEN_CQ_HEAD = 1 << 3,
	SEEN_CQ_TAIL = 1 << 4, SEEN_FILES = 1 << 5, SEEN_BUFS = 1 << 6, SEEN_POLLS = 1 << 7,
	SEEN_OVERFLOW = 1 << 8, SEEN_ALL = (1 << 9) - 1,
};

/* One "Name:\tvalue" line, its name @n bytes long: what it says against a fresh ring, or NULL. */
static const char *fdinfo_line(const char *name, size_t n, const char *v, uint64_t ino,
			       long hd[4], unsigned *seen, bool *in_list)
{
	static const char *const counter[4] = { "SqHead", "SqTail", "CqHead", "CqTail" };

#define IS(lit) (n == sizeof(lit) - 1 && !memcmp(name, lit, n))
	if (IS("ino")) {
		*seen |= SEEN_INO;
		return strtoull(v, NULL, 10) == ino ? NULL : DIRT_OTHER_FILE;
	}
	for (int i = 0; i < 4; i++) {
		if (n == 6 && !memcmp(name, counter[i], 6)) {
			hd[i] = strtol(v, NULL, 10);
			*seen |= SEEN_SQ_HEAD << i;
			return NULL;
		}
	}
	if (IS("UserFiles") || IS("UserBufs")) {
		*seen |= IS("UserFiles") ? SEEN_FILES : SEEN_BUFS;
		return is_zero(v) ? NULL : DIRT_REGISTERED;
	}
	if (IS("SQEs") || IS("CQEs"))
		return is_zero(v) ? NULL : "SQEs or CQEs";
	if (IS("PollList") || IS("CqOverflowList")) {
		*seen |= IS("PollList") ? SEEN_POLLS : SEEN_OVERFLOW;
		*in_list = true;
		return NULL;
	}
	if (IS("Personalities"))
		return "personalities";
	if (IS("NAPI") && strncmp(v, "disabled", 8))
		return DIRT_REGISTERED;
#undef IS
	return NULL;
}

/*
 * What the kernel shows of the ring in its fdinfo: the program's fd
 * number still this ring, no files, no buffers, no personalities (older
 * kernels list them), no polls, no overflowed CQEs, SQ and CQ empty, NAPI
 * off.  NULL when clean, else what is not.  "incomplete": a field is
 * missing -- another kernel's format, or the kernel could not take the
 * ring's lock (it then shows only what it can without it: an io-wq worker
 * ending a cancelled request may hold it for a moment).
 */
static const char *fdinfo_dirt(const struct hr_pool_rec *pr)
{
	char buf[8192], *stop;
	long hd[4] = { -1, -2, -1, -2 };
	unsigned seen = 0;
	bool in_list = false;
	ssize_t n = pread(pr->info_fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return "unreadable (the fd closed?)";
	buf[n] = '\0';
	stop = buf + n;
	/*
	 * Full: more may follow (one line per registered file or buffer);
	 * parse the whole lines read, which say what comes first.
	 */
	if (n == (ssize_t)sizeof(buf) - 1 && (stop = memrchr(buf, '\n', (size_t)n)))
		stop++;
	for (char *line = buf, *end; stop && line < stop; line = end) {
		const char *colon, *v, *dirt;

		end = memchr(line, '\n', (size_t)(stop - line));
		end = end ? end + 1 : stop;
		if (*line == ' ' || *line == '\t') {
			if (in_list)
				return DIRT_POLL;
			continue;
		}
		in_list = false;
		colon = memchr(line, ':', (size_t)(end - line));
		if (!colon)
			continue;
		for (v = colon + 1; *v == '\t' || *v == ' '; v++)
			;
		dirt = fdinfo_line(line, (size_t)(colon - line), v, pr->ino, hd, &seen, &in_list);
		if (dirt)
			return dirt;
	}
	/* Printed with or without the ring's lock: without them, not a ring. */
	if (!(seen & SEEN_INO) || !(seen & SEEN_SQ_HEAD))
		return DIRT_OTHER_FILE;
	if (seen != SEEN_ALL)
		return stop == buf + n ? "incomplete" : "too long";
	return hd[0] == hd[1] && hd[2] == hd[3] ? NULL : "SQ or CQ not empty";
}

/* fdinfo_dirt, read again while incomplete (a lock held for a moment), until @deadline. */
static const char *fdinfo_check(const struct hr_pool_rec *pr, long deadline)
{
	const char *dirt;

	while ((dirt = fdinfo_dirt(pr)) && !strcmp(dirt, "incomplete") && hr_now_ms() < deadline)
		sched_yield();
	return dirt;
}

/* Under no lock: room for one more (checked again when it goes in). */
static bool room(void)
{
	return __atomic_load_n(&pool_n, __ATOMIC_RELAXED) < POOL_MAX;
}

static bool keep(struct io_uring *ring, struct hr_ring_rec *rec)
{
	struct pooled *e = malloc(sizeof(*e));

	if (!e)
		return false;
	pthread_once(&key_once, make_key);
	if (!key_ok)
		goto no;
	if (!key_set) {
		/* The destructor runs only for a non-NULL value: the token is one. */
		if (pthread_setspecific(exit_key, (void *)(uintptr_t)thread_token()))
			goto no;
		key_set = true;
	}
	e->ring = *ring;
	e->rec = rec;
	e->since = hr_now_ms();
	pthread_mutex_lock(&pool_lock);
	if (pool_n >= POOL_MAX) {
		pthread_mutex_unlock(&pool_lock);
		goto no;
	}
	e->next = pool;
	pool = e;
	__atomic_add_fetch(&pool_n, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&pool_lock);
	/* Queued already: due no later than this ring; running: runs again. */
	hr_worker_post_at(&idle_job, e->since + POOL_IDLE_MS);
	return true;
no:
	free(e);
	return false;
}

/* Closed, not pooled, and why (to the log callback, HUGERING_LOG_DEBUG). */
static bool not_pooled(const char *why)
{
	hr_log(HUGERING_LOG_DEBUG, "ring not pooled: %s", why);
	return false;
}

bool hr_pool_put(struct io_uring *ring, struct hr_ring_rec *rec)
{
	long deadline = hr_now_ms() + DRAIN_MS;
	const char *dirt;
	unsigned sqe_tail;

	if (!room())
		return not_pooled("the pool is full");
	if (!untouched(ring, rec))
		return not_pooled("not the creating thread, a registered ring fd, a CQ overflow, "
				  "dropped SQEs, resized, or another fd number");
	sqe_tail = ring->sq.sqe_tail;	/* before the drop: SQEs got may have reached scanned slots */
	drop_unsubmitted(ring);
	/* The cancel loop reaped last (task work run for DEFER_TASKRUN). */
	if (cancel_all(ring, rec->ref_fd, deadline, NULL) || poll_all(ring, rec->ref_fd, deadline))
		return not_pooled("requests still in flight after 50 ms");
	if (drain_barrier(ring, rec, sqe_tail, deadline))
		return not_pooled("requests no cancel reaches still in flight after 50 ms, a drain "
				  "refused (IOSQE_CQE_SKIP_SUCCESS) or left on, or unprovable "
				  "(a zero-copy send before Linux 6.16)");
	if (io_uring_cq_ready(ring) || io_uring_sq_ready(ring))
		return not_pooled("SQ or CQ not empty after the drain");
	if (!undo_unseen(rec))
		return not_pooled("an unregistration failed, or a personality was registered");
	dirt = fdinfo_check(&rec->pool, deadline);
	if (dirt == DIRT_REGISTERED) {
		if (!undo_shown(rec->ref_fd))
			return not_pooled("unregistering files, buffers or NAPI failed");
		dirt = fdinfo_check(&rec->pool, deadline);
	}
	/*
	 * A poll the cancel did not find: a request moving from io-wq to poll
	 * (a cancelled read retried as a poll) between two cancels.  Cancel
	 * again while there is time; still there: close.
	 */
	while (dirt == DIRT_POLL && hr_now_ms() < deadline) {
		if (cancel_all(ring, rec->ref_fd, deadline, NULL) || io_uring_cq_ready(ring) ||
		    !counters_clean(ring))
			break;
		dirt = fdinfo_check(&rec->pool, deadline);
	}
	if (dirt) {
		hr_log(HUGERING_LOG_DEBUG, "ring not pooled: /proc/thread-self/fdinfo: %s", dirt);
		return false;
	}
	/*
	 * hugering's own buffer rings and registered-buffer records: only now,
	 * the program's fd number (which these use) being known to be the ring.
	 */
	if (hr_ring_hooks_reset(ring))
		return not_pooled("a buffer ring of hugering's did not unregister");
	/* A fresh CQ has no flags set (the program may have set EVENTFD_DISABLED). */
	if (ring->cq.kflags && *ring->cq.kflags)
		__atomic_store_n(ring->cq.kflags, 0, __ATOMIC_RELEASE);
	if (!counters_clean(ring))
		return not_pooled("overflowed while draining");
	/* A fresh ring shows no task work pending (IORING_SETUP_TASKRUN_FLAG). */
	if (__atomic_load_n(ring->sq.kflags, __ATOMIC_ACQUIRE) & IORING_SQ_TASKRUN)
		return not_pooled("task work still pending after the drain");
	rec->pool.sq_head = io_uring_smp_load_acquire(ring->sq.khead);
	return keep(ring, rec) || not_pooled("the pool is full");
}

/* ------------------------------------------------------------------ */
/* fork                                                                */
/* ------------------------------------------------------------------ */

static void fork_prepare(void)
{
	pthread_mutex_lock(&pool_lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&pool_lock);
}

/*
 * The child's copies are its parent's rings: closing the child's fds
 * leaves them to the parent.  Their memory is not the child's arena's:
 * left mapped, as for any inherited ring.
 */
static void forget_in_child(struct pooled **list)
{
	struct pooled *e;

	while ((e = *list)) {
		*list = e->next;
		close(e->ring.ring_fd);
		if (e->rec->ref_fd >= 0)
			close(e->rec->ref_fd);
		hr_ring_rec_free(e->rec);
		free(e);
	}
}

static void fork_child(void)
{
	forget_in_child(&pool);
	/* The parent's threads closing these do not exist here. */
	forget_in_child(&closing);
	pool_n = 0;
	/*
	 * The forking thread's token is its parent's: a new one, so the live
	 * rings the child inherited are never taken for its own at exit.
	 */
	my_token = 0;
	key_set = false;
	pthread_mutex_unlock(&pool_lock);
}

__attribute__((constructor)) static void register_atfork(void)
{
	/* The pool's lock is never held while another of the library's is taken. */
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}
