/*
 * Sending a fan-out round through io_uring: see send-uring.h.
 *
 * One ring per broker, set up by send_ring_new() and used only by the
 * thread that runs the broker (one submission at a time, every completion
 * reaped before send_ring_submit() returns, so the completion queue, twice
 * the submission queue, cannot overflow). No registered files: they save
 * nothing measurable here and would need a slot table kept in step with
 * every close() (docs/performance.md §9.2, ablations).
 */

#include <assert.h>
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "send-uring.h"

struct SendRing {
        struct io_uring ring;
        unsigned n_pushed;              /* since the last submission */
        bool enabled;                   /* by the thread that submits, see send_ring_new() */
        bool broken;                    /* a submission failed: the ring is not used again */
};

/**
 * send_ring_new() - set up a ring of SEND_RING_ENTRIES requests
 * @ret:        the ring, on success
 *
 * Flags, all required:
 * - IORING_SETUP_DEFER_TASKRUN (with SINGLE_ISSUER, Linux 6.1): completions
 *   and linked successors are processed only inside the io_uring_enter()
 *   that waits for them, which runs the whole round without a scheduling
 *   point. Without it plexusd was preempted more often by the receivers it
 *   woke than with sendmmsg(), and used 1.6x its CPU per delivery
 *   (docs/performance.md §9.5): without it, io_uring is not worth using.
 * - IORING_SETUP_SUBMIT_ALL: else the kernel stops submitting at the first
 *   request that fails early and leaves the rest in the ring, to be sent,
 *   out of order, by a later submission.
 * - IORING_SETUP_R_DISABLED: SINGLE_ISSUER binds the ring to the thread
 *   that enables it, which is the one that runs the broker (the first
 *   send_ring_submit()), not necessarily the one that creates it.
 *
 * Return: 0; -ENOSYS (no io_uring), -EPERM (kernel.io_uring_disabled, a
 * seccomp filter), -ENOMEM (RLIMIT_MEMLOCK on old kernels) or -EINVAL
 * (a kernel older than 6.1) when io_uring cannot be used; another
 * negative errno.
 */
int send_ring_new(SendRing **ret) {
        _cleanup_(send_ring_freep) SendRing *r = NULL;
        int k;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        k = io_uring_queue_init(SEND_RING_ENTRIES, &r->ring,
                                IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
                                IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                IORING_SETUP_R_DISABLED);
        if (k < 0) {
                r->ring.ring_fd = -1;
                return k;
        }

        *ret = TAKE_PTR(r);
        return 0;
}

/**
 * send_ring_free() - tear down @r; NULL is fine
 *
 * Return: NULL.
 */
SendRing *send_ring_free(SendRing *r) {
        if (!r)
                return NULL;
        if (r->ring.ring_fd >= 0)
                io_uring_queue_exit(&r->ring);
        free(r);
        return NULL;
}

/**
 * send_ring_space() - how many more requests the next submission can take
 */
unsigned send_ring_space(const SendRing *r) {
        return SEND_RING_ENTRIES - r->n_pushed;
}

/**
 * send_ring_push() - add a sendmsg() on @fd to the next submission
 * @r:          the ring; send_ring_space() must be > 0
 * @fd:         the socket; borrowed, must stay open until the submission
 * @mh:         the datagram; borrowed, with its iovecs and buffers, until
 *              send_ring_submit() returns
 * @link_next:  the next request pushed runs only if this one succeeds
 *
 * The request's result goes to the slot of send_ring_submit()'s @res given
 * by its position among the requests pushed since the last submission.
 */
void send_ring_push(SendRing *r, int fd, const struct msghdr *mh, bool link_next) {
        struct io_uring_sqe *sqe;

        assert(r->n_pushed < SEND_RING_ENTRIES);
        sqe = io_uring_get_sqe(&r->ring);
        assert(sqe);
        io_uring_prep_sendmsg(sqe, fd, mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (link_next)
                sqe->flags |= IOSQE_IO_LINK;
        io_uring_sqe_set_data64(sqe, r->n_pushed);
        r->n_pushed++;
}

/**
 * send_ring_submit() - send what was pushed and wait until all is done
 * @r:          the ring
 * @res:        one slot per request pushed: bytes sent or a negative errno
 *              (-EAGAIN, -ECANCELED for the requests behind a failed link,
 *              -EPIPE, ...)
 *
 * With MSG_DONTWAIT every request completes within the io_uring_enter()
 * that submits it; the wait only collects what is there.
 *
 * Return: the number of requests, all with their results in @res; or a
 * negative errno, and then nothing was sent and the ring must not be used
 * again (the caller sends the round itself).
 */
int send_ring_submit(SendRing *r, int32_t *res) {
        struct io_uring_cqe *cqe;
        unsigned n = r->n_pushed, n_done = 0;
        int k;

        if (r->broken)
                return -EIO;
        if (n == 0)
                return 0;
        if (!r->enabled) {
                /* liburing 2.3 declares io_uring_enable_rings() but does not export it. */
                if (syscall(__NR_io_uring_register, r->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0) {
                        r->broken = true;
                        return -errno;
                }
                r->enabled = true;
        }

        k = io_uring_submit_and_wait(&r->ring, n);
        if (k < 0) {
                /*
                 * The kernel reports an error only when it took no request
                 * (-EEXIST: a thread other than the first one submits).
                 * They are still in the submission queue: a later submission
                 * would send them with buffers long gone.
                 */
                r->broken = true;
                return k;
        }
        /* With SUBMIT_ALL the kernel takes all or nothing. */
        assert((unsigned)k == n);
        r->n_pushed = 0;

        for (unsigned i = 0; i < n; i++)
                res[i] = INT32_MIN;
        while (n_done < n) {
                unsigned head, seen = 0;

                k = io_uring_wait_cqe(&r->ring, &cqe);
                if (k == -EINTR)
                        continue;
                if (k < 0) {
                        /*
                         * Cannot happen with requests that never block; if
                         * it does, results are unknown: what was not
                         * reported is taken as failed (the caller hangs up
                         * those receivers rather than risk sending a frame
                         * twice), and this ring is done.
                         */
                        for (unsigned i = 0; i < n; i++)
                                if (res[i] == INT32_MIN)
                                        res[i] = -EIO;
                        r->broken = true;
                        return (int)n;
                }
                io_uring_for_each_cqe(&r->ring, head, cqe) {
                        uint64_t i = io_uring_cqe_get_data64(cqe);

                        assert(i < n);
                        res[i] = cqe->res;
                        seen++;
                }
                io_uring_cq_advance(&r->ring, seen);
                n_done += seen;
        }
        return (int)n;
}
