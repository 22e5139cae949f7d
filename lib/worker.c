/* SPDX-License-Identifier: MIT */
/*
 * The background worker: one thread per process that runs jobs the
 * caller's threads should not wait for (faulting in a fresh hugepage for
 * the next ring: the kernel zeroes it, ~0.35 ms for 2 MiB here).
 *
 * Why a thread and not a signal from the kernel: a plain or SQPOLL ring
 * unpins its memory in the kernel's asynchronous teardown, and nothing a
 * process can see says when that is done (see arena.c), so its memory is
 * never reused and every ring that fills a page needs a fresh one.  The
 * zeroing cannot be avoided, only moved off the caller's path.
 *
 * The thread exists only while there is such work: it starts at the first
 * job and ends after IDLE_MS without one, so a program that stops making
 * rings has no thread of ours.  Its signals are blocked (no handler of the
 * program runs on it).  If no thread can be made, jobs are simply not run:
 * every job is an optimisation its owner can do without.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define IDLE_MS 1000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work;	/* a job was posted (CLOCK_MONOTONIC waits) */
static pthread_cond_t done;	/* a job finished */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct hr_job *head, *tail;
static bool running;
static struct hr_job *current;	/* the job the thread runs now, or NULL */
static unsigned long started;	/* threads started, for tests and logs */

/* The idle timeout is on CLOCK_MONOTONIC: a wall-clock step must not end or prolong it. */
static void init_conds(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&work, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&done, NULL);
}

static void unlink_job(struct hr_job *j);

/* Under the lock: the first job due by @now (ms), off the queue; else NULL and *@next the earliest due. */
static struct hr_job *pop_due(long now, long *next)
{
	*next = 0;
	for (struct hr_job *p = head; p; p = p->next) {
		if (p->due_ms <= now) {
			unlink_job(p);
			return p;
		}
		if (!*next || p->due_ms < *next)
			*next = p->due_ms;
	}
	return NULL;
}

static void ms_to_ts(long ms, struct timespec *ts)
{
	ts->tv_sec = ms / 1000;
	ts->tv_nsec = (ms % 1000) * 1000000L;
}

/*
 * Under the lock: wait for a due job; NULL after IDLE_MS with no job at
 * all.  A job posted for later (hr_worker_post_at) keeps the thread until
 * it is due.
 */
static struct hr_job *next_job(void)
{
	long idle_end = hr_now_ms() + IDLE_MS;

	for (;;) {
		long now = hr_now_ms(), next;
		struct hr_job *j = pop_due(now, &next);
		struct timespec until;

		if (j)
			return j;
		if (!head && now >= idle_end)
			return NULL;
		ms_to_ts(head ? next : idle_end, &until);
		pthread_cond_timedwait(&work, &lock, &until);
		if (head)
			idle_end = hr_now_ms() + IDLE_MS;
	}
}

/* Under the lock: @j at the end of the queue. */
static void enqueue(struct hr_job *j)
{
	j->queued = true;
	j->next = NULL;
	if (tail)
		tail->next = j;
	else
		head = j;
	tail = j;
}

static void *worker_main(void *arg)
{
	struct hr_job *j;

	(void)arg;
	pthread_mutex_lock(&lock);
	while ((j = next_job())) {
		j->running = true;
		current = j;
		pthread_mutex_unlock(&lock);
		j->run(j);
		pthread_mutex_lock(&lock);
		current = NULL;
		j->running = false;
		if (j->again) {
			j->again = false;
			enqueue(j);
		}
		pthread_cond_broadcast(&done);
	}
	running = false;
	pthread_mutex_unlock(&lock);
	return NULL;
}

/* Under the lock: 0, or the pthread_create error (logged by the caller, unlocked). */
static int start(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	int ret;

	ret = pthread_attr_init(&attr);
	if (ret)
		return ret;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&t, &attr, worker_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (ret)
		return ret;
	pthread_setname_np(t, "hugering-bg");
	running = true;
	started++;
	return 0;
}

/* Under the lock: take @j off the queue if it is on it. */
static void unlink_job(struct hr_job *j)
{
	struct hr_job *prev = NULL;

	if (!j->queued)
		return;
	for (struct hr_job *p = head; p; prev = p, p = p->next) {
		if (p != j)
			continue;
		if (prev)
			prev->next = j->next;
		else
			head = j->next;
		if (tail == j)
			tail = prev;
		break;
	}
	j->next = NULL;
	j->queued = false;
}

/* @rerun: a post while @j runs makes it run again (at @due_ms) instead of being dropped. */
static void post(struct hr_job *j, long due_ms, bool rerun)
{
	int err = 0;

	pthread_once(&once, init_conds);
	pthread_mutex_lock(&lock);
	if (rerun && j->running && !j->queued) {
		if (!j->again || due_ms < j->due_ms)
			j->due_ms = due_ms;
		j->again = true;
	} else if (!j->queued && !j->running) {
		j->due_ms = due_ms;
		enqueue(j);
		if (!running)
			err = start();
		if (running)
			pthread_cond_signal(&work);
		else
			unlink_job(j);	/* no thread: nobody would run it */
	}
	pthread_mutex_unlock(&lock);
	if (err)
		hr_log(HUGERING_LOG_DEBUG, "background worker: no thread (%s): the work stays "
		       "undone", strerror(err));
}

void hr_worker_post(struct hr_job *j)
{
	post(j, 0, false);
}

void hr_worker_post_at(struct hr_job *j, long due_ms)
{
	post(j, due_ms, true);
}

/*
 * @j will not run after this returns: off the queue, and not running (a
 * run in progress is waited for).  Its owner may then free it.
 */
void hr_worker_cancel(struct hr_job *j)
{
	pthread_once(&once, init_conds);
	pthread_mutex_lock(&lock);
	unlink_job(j);
	while (j->running)
		pthread_cond_wait(&done, &lock);
	unlink_job(j);	/* it may have asked to run again */
	pthread_mutex_unlock(&lock);
}

unsigned long hr_worker_started(void)
{
	unsigned long n;

	pthread_mutex_lock(&lock);
	n = started;
	pthread_mutex_unlock(&lock);
	return n;
}

/* fork(): the child has no worker thread, and the parent's jobs are not its own. */
void hr_worker_fork_prepare(void)
{
	pthread_mutex_lock(&lock);
}

void hr_worker_fork_parent(void)
{
	pthread_mutex_unlock(&lock);
}

/*
 * The child's copies of the parent's jobs must look never posted: one left
 * "queued" would never be posted again, one left "running" would make
 * hr_worker_cancel wait for a thread the child does not have.
 */
void hr_worker_fork_child(void)
{
	for (struct hr_job *p = head, *n; p; p = n) {
		n = p->next;
		p->next = NULL;
		p->queued = p->again = false;
	}
	if (current)
		current->running = current->again = false;
	current = NULL;
	head = tail = NULL;
	running = false;
	init_conds();	/* no thread of the child waits on them */
	pthread_mutex_unlock(&lock);
}
