/*
 * Raw SOCK_SEQPACKET ping-pong between two processes (see raw.h).
 *
 * The echo child checks every datagram with payload_check() and sends it
 * back; the measuring parent compares each answer with what it sent, as the
 * bus measurements do. Blocking sockets: the floor is one sendmsg() and one
 * recvmsg() per side, with the wake-ups the kernel needs for them.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "payload.h"
#include "proc.h"
#include "raw.h"
#include "stats.h"
#include "util.h"

static int echo_main(int fd) {
        _cleanup_(freep) uint8_t *buf = malloc(PAYLOAD_MAX);
        uint64_t seq;

        if (!buf)
                return 1;
        for (;;) {
                ssize_t n = recv(fd, buf, PAYLOAD_MAX, 0);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n == 0)
                        return 0;
                if (n < 0)
                        return 1;
                if (payload_check(buf, (size_t)n, (size_t)n, &seq) < 0) {
                        fprintf(stderr, "plexus-bench: raw echo: bad payload\n");
                        return 1;
                }
                if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n)
                        return 1;
        }
}

/* A socketpair with an echo child on the other end. */
static int echo_start(int *ret_fd, pid_t *ret_pid) {
        int sv[2];
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        pid = proc_fork();
        if (pid < 0) {
                close(sv[0]);
                close(sv[1]);
                return pid;
        }
        if (pid == 0) {
                close(sv[0]);
                _exit(echo_main(sv[1]));
        }
        close(sv[1]);
        *ret_fd = sv[0];
        *ret_pid = pid;
        return 0;
}

static int echo_stop(int fd, pid_t pid, int r) {
        int status;

        close(fd);
        if (r < 0)
                kill(pid, SIGKILL);
        status = proc_wait(pid, PROC_TIMEOUT_MS);
        if (r >= 0 && status != 0) {
                fprintf(stderr, "plexus-bench: raw echo exited with status %d\n", status);
                return -EPROTO;
        }
        return r;
}

static int recv_check(int fd, uint8_t *buf, size_t size, uint64_t *ret_seq) {
        ssize_t n;

        do
                n = recv(fd, buf, PAYLOAD_MAX, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        if (n == 0)
                return -ECONNRESET;
        return payload_check(buf, (size_t)n, size, ret_seq);
}

/* The CPU time of both ends of the timed calls goes to @ret_cpu_ns; -1 if unreadable. */
static int rtt_loop(int fd, pid_t echo, const BenchOptions *o, Samples *s, int64_t *ret_cpu_ns) {
        _cleanup_(freep) uint8_t *out = malloc(o->size);
        _cleanup_(freep) uint8_t *in = malloc(PAYLOAD_MAX);
        int64_t cpu0 = -1, cpu1;
        uint64_t seq;
        int r;

        if (!out || !in)
                return -ENOMEM;
        for (unsigned i = 0; i < o->warmup + o->iterations; i++) {
                uint64_t t0, t1;

                payload_fill(out, o->size, i);
                if (i == o->warmup) {
                        cpu0 = proc_cpu_ns(echo);
                        if (cpu0 >= 0)
                                cpu0 += (int64_t)proc_self_cpu_ns();
                }
                t0 = now_ns();
                if (send(fd, out, o->size, MSG_NOSIGNAL) != (ssize_t)o->size)
                        return -EIO;
                r = recv_check(fd, in, o->size, &seq);
                t1 = now_ns();
                if (r < 0 || seq != i || memcmp(in, out, o->size) != 0)
                        return r < 0 ? r : -EBADMSG;
                if (i >= o->warmup)
                        samples_add(s, t1 - t0);
        }
        cpu1 = proc_cpu_ns(echo);
        *ret_cpu_ns = cpu0 >= 0 && cpu1 >= 0 ? cpu1 + (int64_t)proc_self_cpu_ns() - cpu0 : -1;
        return 0;
}

/**
 * raw_rtt() - round trip of one datagram to an echo process and back
 * @o:          size, warmup, iterations
 *
 * Return: 0 or negative errno.
 */
int raw_rtt(const BenchOptions *o) {
        _cleanup_(samples_deinit) Samples s = SAMPLES_NULL;
        int64_t cpu_ns = -1;
        pid_t pid;
        int fd, r;

        r = samples_init(&s, o->iterations);
        if (r < 0)
                return r;
        r = echo_start(&fd, &pid);
        if (r < 0)
                return r;
        r = echo_stop(fd, pid, rtt_loop(fd, pid, o, &s, &cpu_ns));
        if (r < 0) {
                fprintf(stderr, "plexus-bench: raw rtt: %s\n", strerror(-r));
                return r;
        }

        printf("mode=rtt size=%zu n=%zu p50_us=%.2f p90_us=%.2f p99_us=%.2f mean_us=%.2f",
               o->size, s.n, samples_percentile_us(&s, 50), samples_percentile_us(&s, 90),
               samples_percentile_us(&s, 99), samples_mean_us(&s));
        if (cpu_ns >= 0)
                printf(" all_cpu_s=%.4f", (double)cpu_ns / 1e9);
        printf("\n");
        return 0;
}

static int pipeline_loop(int fd, const BenchOptions *o, uint64_t base, uint64_t n, uint64_t *ret_ns) {
        _cleanup_(freep) uint8_t *out = malloc(o->size);
        _cleanup_(freep) uint8_t *in = malloc(PAYLOAD_MAX);
        uint64_t sent = 0, done = 0, t0, seq;
        int r;

        if (!out || !in)
                return -ENOMEM;
        t0 = now_ns();
        while (done < n) {
                while (sent < n && sent - done < o->depth) {
                        payload_fill(out, o->size, base + sent);
                        if (send(fd, out, o->size, MSG_NOSIGNAL) != (ssize_t)o->size)
                                return -EIO;
                        sent++;
                }
                r = recv_check(fd, in, o->size, &seq);
                /* One stream, one echo process: answers come back in order. */
                if (r < 0 || seq != base + done)
                        return r < 0 ? r : -EBADMSG;
                done++;
        }
        *ret_ns = now_ns() - t0;
        return 0;
}

/**
 * raw_pipeline() - datagrams per second with @o->depth in flight
 * @o:          size, depth, warmup, iterations
 *
 * Return: 0 or negative errno.
 */
int raw_pipeline(const BenchOptions *o) {
        uint64_t ns = 0;
        pid_t pid;
        int fd, r;

        if (o->depth == 0)
                return -EINVAL;
        r = echo_start(&fd, &pid);
        if (r < 0)
                return r;
        r = o->warmup ? pipeline_loop(fd, o, 0, o->warmup, &ns) : 0;
        if (r >= 0)
                r = pipeline_loop(fd, o, o->warmup, o->iterations, &ns);
        r = echo_stop(fd, pid, r);
        if (r < 0) {
                fprintf(stderr, "plexus-bench: raw pipeline: %s\n", strerror(-r));
                return r;
        }

        printf("mode=pipeline size=%zu depth=%u calls=%u seconds=%.4f calls_per_s=%.0f\n",
               o->size, o->depth, o->iterations, (double)ns / 1e9,
               (double)o->iterations / ((double)ns / 1e9));
        return 0;
}

static int listener_main(int lfd, unsigned n, int ready_fd) {
        uint8_t buf[PAYLOAD_MIN];

        (void)proc_write_all(ready_fd, "R", 1);
        close(ready_fd);
        for (unsigned i = 0; i < n; i++) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                ssize_t k;

                if (fd < 0) {
                        if (errno == EINTR) {
                                i--;
                                continue;
                        }
                        return 1;
                }
                /* The "hello": one datagram in, the same one out. */
                k = recv(fd, buf, sizeof(buf), 0);
                if (k > 0)
                        k = send(fd, buf, (size_t)k, MSG_NOSIGNAL);
                close(fd);
                if (k <= 0)
                        return 1;
        }
        return 0;
}

static int connect_once(const struct sockaddr_un *sa, uint64_t seq) {
        uint8_t out[PAYLOAD_MIN], in[PAYLOAD_MIN];
        _cleanup_(closep) int fd = -1;
        ssize_t n;

        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0)
                return -errno;
        payload_fill(out, sizeof(out), seq);
        if (send(fd, out, sizeof(out), MSG_NOSIGNAL) != (ssize_t)sizeof(out))
                return -EIO;
        n = recv(fd, in, sizeof(in), 0);
        if (n != (ssize_t)sizeof(in) || memcmp(in, out, sizeof(in)) != 0)
                return -EBADMSG;
        return 0;
}

/**
 * raw_connect() - connect, exchange one datagram, close
 * @o:          address (a socket path to create), warmup, iterations
 *
 * Return: 0 or negative errno.
 */
int raw_connect(const BenchOptions *o) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        unsigned total = o->warmup + o->iterations;
        _cleanup_(closep) int lfd = -1;
        int ready[2], r = 0, status;
        uint64_t t0 = 0, ns;
        pid_t pid;

        if (!o->address || strlen(o->address) >= sizeof(sa.sun_path))
                return -EINVAL;
        strcpy(sa.sun_path, o->address);
        (void)unlink(o->address);
        lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (lfd < 0)
                return -errno;
        if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0)
                return -errno;
        if (pipe2(ready, O_CLOEXEC) < 0)
                return -errno;
        pid = proc_fork();
        if (pid < 0)
                return pid;
        if (pid == 0) {
                close(ready[0]);
                _exit(listener_main(lfd, total, ready[1]));
        }
        close(ready[1]);
        lfd = plx_close(lfd);
        r = proc_read_exact(ready[0], &(char){ 0 }, 1, PROC_TIMEOUT_MS);
        close(ready[0]);

        for (unsigned i = 0; r >= 0 && i < total; i++) {
                if (i == o->warmup)
                        t0 = now_ns();
                r = connect_once(&sa, i);
        }
        ns = now_ns() - t0;
        if (r < 0)
                kill(pid, SIGKILL);
        status = proc_wait(pid, PROC_TIMEOUT_MS);
        (void)unlink(o->address);
        if (r >= 0 && status != 0)
                r = -EPROTO;
        if (r < 0) {
                fprintf(stderr, "plexus-bench: raw connect: %s\n", strerror(-r));
                return r;
        }

        printf("mode=connect n=%u seconds=%.4f conn_per_s=%.0f\n", o->iterations, (double)ns / 1e9,
               (double)o->iterations / ((double)ns / 1e9));
        return 0;
}
