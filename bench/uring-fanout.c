/*
 * uring-fanout: does io_uring beat one sendmmsg() per receiver for the
 * broker's fan-out round? (issue 11, "Try io_uring where it pays"; the
 * figures are in docs/performance.md, "io_uring for fan-out".)
 *
 * A standalone model of one plexusd loop round that fans out a burst of
 * signals: N receiver processes, each holding one end of a SOCK_SEQPACKET
 * socketpair and reading with recvmmsg(); a sender that in every round has
 * B frames of FRAME_SIZE bytes (a header plus a 64 B payload, as a routed
 * signal) for each of the N sockets, and sends them by one of:
 *
 *   sendmsg        one sendmsg() per frame
 *   sendmmsg       one sendmmsg() per socket, B datagrams each (the broker
 *                  with per-round output batching)
 *   uring-sendmsg  one IORING_OP_SENDMSG per frame, one io_uring_enter()
 *                  per round
 *   uring-send     one IORING_OP_SEND per frame, one io_uring_enter()
 *   uring-link     as uring-send, the frames of one socket linked
 *                  (IOSQE_IO_LINK), so that a refused frame cancels the
 *                  frames behind it instead of letting them overtake it
 *
 * Every send is non-blocking (the broker must never block): the sockets
 * are O_NONBLOCK and the io_uring requests carry MSG_DONTWAIT, which makes
 * the kernel fail a send to a full socket with -EAGAIN instead of parking
 * it on a poll wait (see `probe`). A frame refused with EAGAIN stays queued
 * for its socket and goes first in the next round, as in the broker.
 *
 * Flow control as in plexus-bench's fan-out: each receiver acknowledges
 * every WINDOW frames by one byte on a shared pipe, and the sender waits
 * for all N acknowledgements after each window, so socket buffers never
 * fill in the measured path. Every frame carries its socket's index and a
 * per-socket sequence number; receivers check both and the payload, and
 * fail on any loss, duplicate or reordering.
 *
 * Printed per run (one line, key=value): sender CPU (user + system, from
 * getrusage(RUSAGE_SELF), io-wq workers included) per datagram, sender
 * system calls per datagram, datagrams per second of wall time (until the
 * last acknowledgement), and EAGAIN/reordering counts.
 *
 *   uring-fanout -m METHOD [-n N] [-b B] [-d DATAGRAMS] [-s SNDBUF] [-F] [-P]
 *   uring-fanout null [-d CALLS]      cost of syscall(SYS_getppid)
 *   uring-fanout probe                what io_uring does on a full socket
 *
 * -F: do not register the sockets as fixed files; -P: plain io_uring_setup()
 * flags (no SUBMIT_ALL, COOP_TASKRUN, SINGLE_ISSUER, DEFER_TASKRUN) and no
 * registered ring fd; -s: a small SO_SNDBUF (e.g. 4096) on the sender's ends,
 * so that sends meet EAGAIN and the backlog path runs. Pinning is left to the caller (taskset), as in
 * bench/run.sh; receivers inherit the sender's affinity.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "stats.h"

#define FRAME_SIZE 150          /* fixed header, routing fields, 64 B payload */
#define WINDOW 64               /* frames per receiver between acknowledgements */
#define BATCH_MAX 64            /* frames per socket per round, backlog included */
#define RING_ENTRIES 8192

typedef enum {
        METHOD_SENDMSG,
        METHOD_SENDMMSG,
        METHOD_URING_SENDMSG,
        METHOD_URING_SEND,
        METHOD_URING_LINK,
} Method;

static const char *const method_names[] = {
        [METHOD_SENDMSG] = "sendmsg",
        [METHOD_SENDMMSG] = "sendmmsg",
        [METHOD_URING_SENDMSG] = "uring-sendmsg",
        [METHOD_URING_SEND] = "uring-send",
        [METHOD_URING_LINK] = "uring-link",
};

typedef struct Receiver {
        int fd;                 /* sender's end, O_NONBLOCK */
        pid_t pid;
        uint64_t queued;        /* frames handed to this receiver so far */
        uint64_t sent;          /* of which accepted by the kernel, in order */
} Receiver;

typedef struct Fanout {
        Method method;
        unsigned n;
        unsigned burst;
        bool fixed_files;
        bool tuned;
        int sndbuf;             /* SO_SNDBUF of the sender's ends, 0: the default */
        Receiver *rx;
        uint8_t (*buf)[BATCH_MAX][FRAME_SIZE];
        struct iovec (*iov)[BATCH_MAX];
        struct msghdr (*msg)[BATCH_MAX];
        struct mmsghdr (*mmsg)[BATCH_MAX];
        struct io_uring ring;
        bool have_ring;
        unsigned ring_flags;
        uint64_t n_calls;       /* send calls: sendmsg, sendmmsg, io_uring_enter */
        uint64_t n_eagain;
        uint64_t n_reordered;   /* frames accepted after an earlier one of theirs was refused */
        uint64_t n_polls;
} Fanout;

static uint8_t payload_byte(unsigned idx, unsigned i) {
        return (uint8_t)(idx * 7u + i * 13u + 1u);
}

static void frame_build(uint8_t *f, unsigned idx, uint64_t seq) {
        uint32_t idx32 = idx;

        memcpy(f, &seq, sizeof(seq));
        memcpy(f + 8, &idx32, sizeof(idx32));
        /* The rest is fixed per receiver: built once in fanout_new(). */
}

/* ---- receivers ---------------------------------------------------------- */

static int receiver_main(int fd, unsigned idx, int ack_fd, uint64_t total) {
        static uint8_t bufs[64][FRAME_SIZE + 16];
        struct iovec iov[64];
        struct mmsghdr mm[64];
        uint64_t expect = 0;

        for (unsigned i = 0; i < 64; i++) {
                iov[i] = (struct iovec) { .iov_base = bufs[i], .iov_len = sizeof(bufs[i]) };
                mm[i] = (struct mmsghdr) { .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
        }
        /* Ready: the sender starts its clock once all receivers are. */
        if (write(ack_fd, "r", 1) != 1)
                return 5;
        for (;;) {
                int n = recvmmsg(fd, mm, 64, MSG_WAITFORONE, NULL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return 1;
                if (n == 0 || mm[0].msg_len == 0)
                        break;
                for (int k = 0; k < n; k++) {
                        const uint8_t *f = bufs[k];
                        uint64_t seq;
                        uint32_t i32;

                        if (mm[k].msg_len != FRAME_SIZE)
                                return 2;
                        memcpy(&seq, f, sizeof(seq));
                        memcpy(&i32, f + 8, sizeof(i32));
                        if (seq != expect || i32 != idx) {
                                fprintf(stderr, "uring-fanout: receiver %u: frame %" PRIu64
                                        " of receiver %" PRIu32 " where frame %" PRIu64 " was due\n",
                                        idx, seq, i32, expect);
                                return 3;
                        }
                        for (unsigned i = 12; i < FRAME_SIZE; i++)
                                if (f[i] != payload_byte(idx, i))
                                        return 4;
                        expect++;
                        if (expect % WINDOW == 0 && write(ack_fd, "a", 1) != 1)
                                return 5;
                }
        }
        return expect == total ? 0 : 6;
}

/* ---- sender ------------------------------------------------------------- */

static void fanout_free(Fanout *fo) {
        if (!fo)
                return;
        if (fo->have_ring)
                io_uring_queue_exit(&fo->ring);
        for (unsigned s = 0; fo->rx && s < fo->n; s++)
                if (fo->rx[s].fd >= 0)
                        close(fo->rx[s].fd);
        free(fo->rx);
        free(fo->buf);
        free(fo->iov);
        free(fo->msg);
        free(fo->mmsg);
        free(fo);
}

static int ring_setup(Fanout *fo) {
        static const unsigned tuned[] = {
                IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
                        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER,
                IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
                0,
        };
        int r = -EINVAL;

        size_t n_tuned = sizeof(tuned) / sizeof(tuned[0]);

        for (size_t i = fo->tuned ? 0 : n_tuned - 1; i < n_tuned; i++) {
                r = io_uring_queue_init(RING_ENTRIES, &fo->ring, tuned[i]);
                if (r == 0) {
                        fo->ring_flags = tuned[i];
                        break;
                }
                if (r != -EINVAL)
                        return r;
        }
        if (r < 0)
                return r;
        fo->have_ring = true;
        if (fo->tuned) {
                r = io_uring_register_ring_fd(&fo->ring);
                if (r < 0 && r != -EINVAL)
                        return r;
        }
        if (fo->fixed_files) {
                int *fds = calloc(fo->n, sizeof(int));

                if (!fds)
                        return -ENOMEM;
                for (unsigned s = 0; s < fo->n; s++)
                        fds[s] = fo->rx[s].fd;
                r = io_uring_register_files(&fo->ring, fds, fo->n);
                free(fds);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int fanout_new(Fanout **ret, Method method, unsigned n, unsigned burst,
                      bool fixed_files, bool tuned, int sndbuf, int ack_fd, uint64_t per_rx) {
        Fanout *fo;
        int r;

        fo = calloc(1, sizeof(*fo));
        if (!fo)
                return -ENOMEM;
        fo->method = method;
        fo->n = n;
        fo->burst = burst;
        fo->fixed_files = fixed_files;
        fo->tuned = tuned;
        fo->sndbuf = sndbuf;
        fo->rx = calloc(n, sizeof(*fo->rx));
        fo->buf = calloc(n, sizeof(*fo->buf));
        fo->iov = calloc(n, sizeof(*fo->iov));
        fo->msg = calloc(n, sizeof(*fo->msg));
        fo->mmsg = calloc(n, sizeof(*fo->mmsg));
        if (!fo->rx || !fo->buf || !fo->iov || !fo->msg || !fo->mmsg) {
                fanout_free(fo);
                return -ENOMEM;
        }
        for (unsigned s = 0; s < n; s++)
                fo->rx[s].fd = -1;

        for (unsigned s = 0; s < n; s++) {
                int sv[2];
                pid_t pid;

                if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
                        r = -errno;
                        fanout_free(fo);
                        return r;
                }
                pid = proc_fork();
                if (pid < 0) {
                        close(sv[0]);
                        close(sv[1]);
                        fanout_free(fo);
                        return pid;
                }
                if (pid == 0) {
                        /* Only our own socket: the others' EOF must not wait for us. */
                        for (unsigned t = 0; t < s; t++)
                                close(fo->rx[t].fd);
                        close(sv[0]);
                        _exit(receiver_main(sv[1], s, ack_fd, per_rx));
                }
                close(sv[1]);
                if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0) {
                        r = -errno;
                        close(sv[0]);
                        fanout_free(fo);
                        return r;
                }
                /* A small buffer makes sends meet EAGAIN: tests the backlog path. */
                if (fo->sndbuf > 0 &&
                    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &fo->sndbuf, sizeof(fo->sndbuf)) < 0) {
                        r = -errno;
                        close(sv[0]);
                        fanout_free(fo);
                        return r;
                }
                fo->rx[s].fd = sv[0];
                fo->rx[s].pid = pid;
                for (unsigned j = 0; j < BATCH_MAX; j++) {
                        uint8_t *f = fo->buf[s][j];

                        for (unsigned i = 12; i < FRAME_SIZE; i++)
                                f[i] = payload_byte(s, i);
                        fo->iov[s][j] = (struct iovec) { .iov_base = f, .iov_len = FRAME_SIZE };
                        fo->msg[s][j] = (struct msghdr) { .msg_iov = &fo->iov[s][j], .msg_iovlen = 1 };
                        fo->mmsg[s][j] = (struct mmsghdr) { .msg_hdr = fo->msg[s][j] };
                }
        }
        if (method >= METHOD_URING_SENDMSG) {
                r = ring_setup(fo);
                if (r < 0) {
                        fanout_free(fo);
                        return r;
                }
        }
        *ret = fo;
        return 0;
}

/* Frames [sent, sent + count) of receiver @s into its slots. */
static unsigned slots_fill(Fanout *fo, unsigned s) {
        Receiver *rx = &fo->rx[s];
        uint64_t count = rx->queued - rx->sent;

        if (count > BATCH_MAX)
                count = BATCH_MAX;
        for (unsigned j = 0; j < count; j++)
                frame_build(fo->buf[s][j], s, rx->sent + j);
        return (unsigned)count;
}

static int send_syscalls(Fanout *fo) {
        for (unsigned s = 0; s < fo->n; s++) {
                Receiver *rx = &fo->rx[s];
                unsigned count = slots_fill(fo, s);

                if (count == 0)
                        continue;
                if (fo->method == METHOD_SENDMMSG) {
                        int k = sendmmsg(rx->fd, fo->mmsg[s], count, MSG_DONTWAIT | MSG_NOSIGNAL);

                        fo->n_calls++;
                        if (k < 0) {
                                if (errno != EAGAIN)
                                        return -errno;
                                fo->n_eagain++;
                                continue;
                        }
                        rx->sent += (unsigned)k;
                        continue;
                }
                for (unsigned j = 0; j < count; j++) {
                        ssize_t k = sendmsg(rx->fd, &fo->msg[s][j], MSG_DONTWAIT | MSG_NOSIGNAL);

                        fo->n_calls++;
                        if (k < 0) {
                                if (errno != EAGAIN)
                                        return -errno;
                                fo->n_eagain++;
                                break;
                        }
                        rx->sent++;
                }
        }
        return 0;
}

static int send_uring(Fanout *fo) {
        static struct io_uring_cqe *cqes[RING_ENTRIES];
        static uint32_t first_fail[1024];
        static uint32_t n_ok[1024];
        unsigned n_sqe = 0, n_cqe = 0;
        int r;

        for (unsigned s = 0; s < fo->n; s++) {
                unsigned count = slots_fill(fo, s);

                first_fail[s] = UINT32_MAX;
                n_ok[s] = 0;
                for (unsigned j = 0; j < count; j++) {
                        struct io_uring_sqe *sqe = io_uring_get_sqe(&fo->ring);
                        int fd = fo->fixed_files ? (int)s : fo->rx[s].fd;

                        /* RING_ENTRIES is above fo->n * BATCH_MAX for n <= 128. */
                        if (!sqe)
                                return -ENOSPC;
                        if (fo->method == METHOD_URING_SENDMSG)
                                io_uring_prep_sendmsg(sqe, fd, &fo->msg[s][j], MSG_DONTWAIT | MSG_NOSIGNAL);
                        else
                                io_uring_prep_send(sqe, fd, fo->buf[s][j], FRAME_SIZE,
                                                   MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (fo->fixed_files)
                                sqe->flags |= IOSQE_FIXED_FILE;
                        if (fo->method == METHOD_URING_LINK && j + 1 < count)
                                sqe->flags |= IOSQE_IO_LINK;
                        io_uring_sqe_set_data64(sqe, (uint64_t)s << 32 | j);
                        n_sqe++;
                }
        }
        if (n_sqe == 0)
                return 0;
        r = io_uring_submit_and_wait(&fo->ring, n_sqe);
        fo->n_calls++;
        if (r < 0)
                return r;
        while (n_cqe < n_sqe) {
                unsigned got = io_uring_peek_batch_cqe(&fo->ring, cqes, RING_ENTRIES);

                if (got == 0) {
                        struct io_uring_cqe *c;

                        r = io_uring_wait_cqe(&fo->ring, &c);
                        fo->n_calls++;
                        if (r < 0)
                                return r;
                        continue;
                }
                for (unsigned i = 0; i < got; i++) {
                        uint64_t d = io_uring_cqe_get_data64(cqes[i]);
                        unsigned s = (unsigned)(d >> 32), j = (unsigned)d;
                        int res = cqes[i]->res;

                        if (res == FRAME_SIZE) {
                                n_ok[s]++;
                                if (first_fail[s] != UINT32_MAX && j > first_fail[s])
                                        fo->n_reordered++;
                        } else if (res == -EAGAIN || res == -ECANCELED) {
                                if (res == -EAGAIN)
                                        fo->n_eagain++;
                                if (j < first_fail[s])
                                        first_fail[s] = j;
                        } else {
                                return res < 0 ? res : -EIO;
                        }
                }
                io_uring_cq_advance(&fo->ring, got);
                n_cqe += got;
        }
        for (unsigned s = 0; s < fo->n; s++)
                fo->rx[s].sent += first_fail[s] == UINT32_MAX ? n_ok[s] : first_fail[s];
        return 0;
}

/* Sends what is still queued, waiting for room: the end of a window. */
static int flush_backlog(Fanout *fo) {
        for (;;) {
                bool pending = false;
                int r;

                for (unsigned s = 0; s < fo->n; s++) {
                        if (fo->rx[s].sent == fo->rx[s].queued)
                                continue;
                        struct pollfd p = { .fd = fo->rx[s].fd, .events = POLLOUT };

                        pending = true;
                        fo->n_polls++;
                        if (poll(&p, 1, PROC_TIMEOUT_MS) <= 0)
                                return -ETIMEDOUT;
                }
                if (!pending)
                        return 0;
                r = fo->method >= METHOD_URING_SENDMSG ? send_uring(fo) : send_syscalls(fo);
                if (r < 0)
                        return r;
        }
}

static int wait_acks(int ack_fd, unsigned n) {
        char buf[1024];

        while (n > 0) {
                int r = proc_read_exact(ack_fd, buf, n < sizeof(buf) ? n : sizeof(buf), PROC_TIMEOUT_MS);

                if (r < 0)
                        return r;
                n -= n < sizeof(buf) ? n : (unsigned)sizeof(buf);
        }
        return 0;
}

static double rusage_us(long *ret_csw) {
        struct rusage ru;

        getrusage(RUSAGE_SELF, &ru);
        if (ret_csw)
                *ret_csw = ru.ru_nvcsw + ru.ru_nivcsw;
        return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
               ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}

static int run_fanout(Method method, unsigned n, unsigned burst, uint64_t datagrams,
                      bool fixed_files, bool tuned, int sndbuf) {
        unsigned window_rounds = burst >= WINDOW ? 1 : WINDOW / burst;
        uint64_t rounds, total;
        Fanout *fo = NULL;
        int ack[2], r, failed = 0;
        double cpu0, cpu1;
        long csw0 = 0, csw1 = 0;
        uint64_t t0, t1;

        if (n == 0 || n > 1024 || burst == 0 || burst > BATCH_MAX || WINDOW % burst != 0 ||
            (uint64_t)n * BATCH_MAX > RING_ENTRIES) {
                fprintf(stderr, "uring-fanout: need 1 <= n <= 128 and burst dividing %u\n", WINDOW);
                return 2;
        }
        rounds = (datagrams + (uint64_t)n * burst - 1) / ((uint64_t)n * burst);
        rounds = (rounds + window_rounds - 1) / window_rounds * window_rounds;
        total = rounds * n * burst;
        if (pipe2(ack, O_CLOEXEC) < 0)
                return 1;
        r = fanout_new(&fo, method, n, burst, fixed_files, tuned, sndbuf, ack[1], rounds * burst);
        close(ack[1]);
        if (r < 0) {
                fprintf(stderr, "uring-fanout: set-up: %s\n", strerror(-r));
                close(ack[0]);
                return 1;
        }

        r = wait_acks(ack[0], n);
        if (r < 0) {
                fprintf(stderr, "uring-fanout: receivers did not start: %s\n", strerror(-r));
                failed = 1;
        }
        t0 = now_ns();
        cpu0 = rusage_us(&csw0);
        for (uint64_t round = 0; !failed && round < rounds; round++) {
                for (unsigned s = 0; s < n; s++)
                        fo->rx[s].queued += burst;
                r = method >= METHOD_URING_SENDMSG ? send_uring(fo) : send_syscalls(fo);
                if (r >= 0 && (round + 1) % window_rounds == 0) {
                        r = flush_backlog(fo);
                        if (r >= 0)
                                r = wait_acks(ack[0], n);
                }
                if (r < 0) {
                        fprintf(stderr, "uring-fanout: round %" PRIu64 ": %s\n", round, strerror(-r));
                        failed = 1;
                        break;
                }
        }
        cpu1 = rusage_us(&csw1);
        t1 = now_ns();

        /* Registered files hold the sockets open: receivers would never see EOF. */
        if (fo->have_ring) {
                io_uring_queue_exit(&fo->ring);
                fo->have_ring = false;
        }
        for (unsigned s = 0; s < n; s++) {
                close(fo->rx[s].fd);
                fo->rx[s].fd = -1;
        }
        for (unsigned s = 0; s < n; s++) {
                int status = proc_wait(fo->rx[s].pid, PROC_TIMEOUT_MS);

                if (status != 0 && !failed) {
                        fprintf(stderr, "uring-fanout: receiver %u exited with %d\n", s, status);
                        failed = 1;
                }
        }
        close(ack[0]);
        if (!failed)
                printf("method=%s n=%u b=%u datagrams=%" PRIu64 " cpu_us_per_dgram=%.3f "
                       "calls_per_dgram=%.4f dgrams_per_s=%.0f eagain=%" PRIu64 " reordered=%" PRIu64
                       " polls=%" PRIu64 " csw_per_round=%.2f fixed_files=%d ring_flags=0x%x\n",
                       method_names[method], n, burst, total, (cpu1 - cpu0) / (double)total,
                       (double)fo->n_calls / (double)total, (double)total * 1e9 / (double)(t1 - t0),
                       fo->n_eagain, fo->n_reordered, fo->n_polls, (double)(csw1 - csw0) / (double)rounds,
                       method >= METHOD_URING_SENDMSG && fixed_files, fo->ring_flags);
        fanout_free(fo);
        return failed;
}

static int run_null(uint64_t calls) {
        double cpu0, cpu1;

        cpu0 = rusage_us(NULL);
        for (uint64_t i = 0; i < calls; i++)
                syscall(SYS_getppid);
        cpu1 = rusage_us(NULL);
        printf("method=null calls=%" PRIu64 " cpu_us_per_call=%.3f\n", calls, (cpu1 - cpu0) / (double)calls);
        return 0;
}

/* ---- probe: io_uring on a full socket ------------------------------------- */

static int count_threads(void) {
        char line[256];
        int threads = -1;
        FILE *f = fopen("/proc/self/status", "re");

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Threads: %d", &threads) == 1)
                        break;
        fclose(f);
        return threads;
}

static void probe_one(const char *what, bool nonblock_fd, unsigned msg_flags, bool use_sendmsg,
                      unsigned chain, bool link) {
        uint8_t frame[FRAME_SIZE] = { 0 }, sink[FRAME_SIZE + 16];
        struct iovec iov = { .iov_base = frame, .iov_len = FRAME_SIZE };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        struct io_uring ring;
        struct io_uring_cqe *cqe;
        unsigned filled = 0, done = 0;
        int sv[2], r;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return;
        while (send(sv[0], frame, FRAME_SIZE, MSG_DONTWAIT) == FRAME_SIZE)
                filled++;
        if (nonblock_fd)
                (void)fcntl(sv[0], F_SETFL, O_NONBLOCK);
        r = io_uring_queue_init(16, &ring, 0);
        if (r < 0) {
                printf("probe %s: io_uring_queue_init: %s\n", what, strerror(-r));
                goto out;
        }
        for (unsigned i = 0; i < chain; i++) {
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

                if (use_sendmsg)
                        io_uring_prep_sendmsg(sqe, sv[0], &mh, msg_flags);
                else
                        io_uring_prep_send(sqe, sv[0], frame, FRAME_SIZE, msg_flags);
                if (link && i + 1 < chain)
                        sqe->flags |= IOSQE_IO_LINK;
                io_uring_sqe_set_data64(sqe, i);
        }
        r = io_uring_submit(&ring);
        printf("probe %s (socket full after %u frames): submitted %d;", what, filled, r);
        {
                struct timespec ts = { .tv_nsec = 50 * 1000 * 1000 };

                nanosleep(&ts, NULL);
        }
        while (io_uring_peek_cqe(&ring, &cqe) == 0) {
                printf(" at once: #%" PRIu64 " res=%s;", (uint64_t)cqe->user_data,
                       cqe->res < 0 ? strerror(-cqe->res) : "sent");
                io_uring_cqe_seen(&ring, cqe);
                done++;
        }
        if (done < chain) {
                printf(" %u still pending after 50 ms (threads in this process: %d);",
                       chain - done, count_threads());
                /*
                 * Make room: does the parked request complete by itself? A
                 * unix datagram socket polls writable only once its queued
                 * bytes fall to a quarter of SO_SNDBUF, so drain it all.
                 */
                while (recv(sv[1], sink, sizeof(sink), MSG_DONTWAIT) > 0)
                        ;
                while (done < chain) {
                        struct __kernel_timespec kts = { .tv_sec = 1 };

                        if (io_uring_wait_cqe_timeout(&ring, &cqe, &kts) < 0) {
                                printf(" no completion 1 s after room was made;");
                                break;
                        }
                        printf(" after room: #%" PRIu64 " res=%s;", (uint64_t)cqe->user_data,
                               cqe->res < 0 ? strerror(-cqe->res) : "sent");
                        io_uring_cqe_seen(&ring, cqe);
                        done++;
                }
        }
        printf("\n");
        io_uring_queue_exit(&ring);
out:
        close(sv[0]);
        close(sv[1]);
}

static int run_probe(void) {
        probe_one("send, blocking fd, no MSG_DONTWAIT", false, MSG_NOSIGNAL, false, 1, false);
        probe_one("send, O_NONBLOCK fd, no MSG_DONTWAIT", true, MSG_NOSIGNAL, false, 1, false);
        probe_one("send, MSG_DONTWAIT", false, MSG_DONTWAIT | MSG_NOSIGNAL, false, 1, false);
        probe_one("sendmsg, O_NONBLOCK fd, no MSG_DONTWAIT", true, MSG_NOSIGNAL, true, 1, false);
        probe_one("sendmsg, MSG_DONTWAIT", false, MSG_DONTWAIT | MSG_NOSIGNAL, true, 1, false);
        probe_one("3 linked sends, MSG_DONTWAIT", true, MSG_DONTWAIT | MSG_NOSIGNAL, false, 3, true);
        probe_one("3 unlinked sends, MSG_DONTWAIT", true, MSG_DONTWAIT | MSG_NOSIGNAL, false, 3, false);
        return 0;
}

int main(int argc, char **argv) {
        Method method = METHOD_SENDMMSG;
        unsigned n = 10, burst = 4;
        uint64_t datagrams = 400000;
        bool fixed_files = true, tuned = true;
        int c, sndbuf = 0;

        if (argc > 1 && strcmp(argv[1], "probe") == 0)
                return run_probe();
        if (argc > 1 && strcmp(argv[1], "null") == 0) {
                if (argc > 3 && strcmp(argv[2], "-d") == 0)
                        datagrams = strtoull(argv[3], NULL, 10);
                else
                        datagrams = 2000000;
                return run_null(datagrams);
        }
        while ((c = getopt(argc, argv, "m:n:b:d:s:FP")) >= 0) {
                switch (c) {
                case 'm': {
                        bool found = false;

                        for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++)
                                if (strcmp(optarg, method_names[i]) == 0) {
                                        method = (Method)i;
                                        found = true;
                                }
                        if (!found) {
                                fprintf(stderr, "uring-fanout: unknown method %s\n", optarg);
                                return 2;
                        }
                        break;
                }
                case 'n':
                        n = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 'b':
                        burst = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 'd':
                        datagrams = strtoull(optarg, NULL, 10);
                        break;
                case 's':
                        sndbuf = atoi(optarg);
                        break;
                case 'F':
                        fixed_files = false;
                        break;
                case 'P':
                        tuned = false;
                        break;
                default:
                        fprintf(stderr, "usage: uring-fanout [-m METHOD] [-n N] [-b B] [-d DATAGRAMS] [-s SNDBUF] [-F] [-P] | null | probe\n");
                        return 2;
                }
        }
        signal(SIGPIPE, SIG_IGN);
        return run_fanout(method, n, burst, datagrams, fixed_files, tuned, sndbuf);
}
