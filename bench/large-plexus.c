/*
 * The large-payload methods through plexusd and libplexus (see large.h).
 *
 * Calls (process-vm, memfd, buffer, inline): a forked service exports
 * "Sum", which adds up the payload as 64-bit words and replies with the
 * 8-byte sum, and "Quit". It passes its unique id to the sender over a
 * pipe. The sender chooses the path with plx_bus_set_large_path(), as an
 * application could, and a threshold below every measured size so that the
 * large path is taken wherever the method asks for it.
 *
 * Fan-out: subscriber processes sum each signal and write the sum to a
 * pipe the publisher waits on; the publisher keeps its bus connection
 * serviced meanwhile, since with process_vm it must get TransferDone for
 * the copy it lent.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <plexus/plexus.h>

#include "large.h"
#include "proc.h"
#include "util.h"

#define ID_MAX 256
/* Below every measured size: the method, not the threshold, picks the path. */
#define LARGE_BENCH_THRESHOLD 4096u

typedef struct CallState {
        plx_bus *bus;
        int path;
        char dest[ID_MAX];
        plx_buffer *pending;            /* buffer: prepared, not yet sent */
        int error;                      /* from a callback, negative */
} CallState;

static int on_stray_error(plx_msg *error, void *userdata) {
        int *failed = userdata;

        fprintf(stderr, "plexus-bench-large: unexpected error %s: %s\n",
                plx_msg_get_error_name(error), plx_msg_get_error_message(error) ?: "");
        if (*failed == 0)
                *failed = -EIO;
        return -EIO;
}

static int connect_bus(plx_bus **ret, const char *address, int path, int *failed) {
        plx_bus *bus = NULL;
        int r;

        r = plx_bus_new(&bus, address, "plexus-bench-large");
        if (r < 0)
                return r;
        plx_bus_set_error_handler(bus, on_stray_error, failed);
        r = plx_bus_set_large_path(bus, path);
        if (r >= 0 && path != PLX_LARGE_INLINE)
                r = plx_bus_set_large_threshold(bus, LARGE_BENCH_THRESHOLD);
        if (r < 0) {
                plx_bus_free(bus);
                return r;
        }
        *ret = bus;
        return 0;
}

/*
 * Dispatch what is ready. Only if nothing was, wait up to @timeout_ms and
 * dispatch what arrived: the caller must see a dispatched message (Quit,
 * the last signal) before anybody waits again.
 */
static int pump(plx_bus *bus, int timeout_ms) {
        struct pollfd p;
        int r, ms, n = 0;

        while ((r = plx_bus_process(bus)) > 0)
                n++;
        if (r < 0 || n > 0)
                return r;
        r = plx_bus_get_timeout(bus, &ms);
        if (r < 0)
                return r;
        if (ms < 0 || (timeout_ms >= 0 && ms > timeout_ms))
                ms = timeout_ms;
        p = (struct pollfd) { .fd = plx_bus_get_fd(bus), .events = (short)plx_bus_get_events(bus) };
        if (poll(&p, 1, ms) < 0 && errno != EINTR)
                return -errno;
        while ((r = plx_bus_process(bus)) > 0)
                ;
        return r;
}

/* --- the Sum service ------------------------------------------------------- */

static int on_sum(plx_msg *call, void *userdata) {
        const void *payload;
        uint64_t sum;
        size_t size;

        payload = plx_msg_get_payload(call, &size);
        sum = large_sum(payload, size);
        return plx_msg_reply(call, &sum, sizeof(sum));
}

static int on_quit(plx_msg *call, void *userdata) {
        bool *quit = userdata;

        *quit = true;
        return plx_msg_reply(call, NULL, 0);
}

static int service_main(const void *arg, int fd) {
        const LargeOptions *o = arg;
        char line[ID_MAX + 2];
        plx_bus *bus = NULL;
        bool quit = false;
        int failed = 0, r;

        r = large_pin(o->receiver_cpu);
        if (r >= 0)
                r = connect_bus(&bus, o->address, PLX_LARGE_AUTO, &failed);
        if (r >= 0)
                r = plx_bus_add_method(bus, NULL, "Sum", on_sum, NULL);
        if (r >= 0)
                r = plx_bus_add_method(bus, NULL, "Quit", on_quit, &quit);
        if (r < 0) {
                fprintf(stderr, "plexus-bench-large: service: %s\n", strerror(-r));
                (void)proc_write_all(fd, "!\n", 2);
                plx_bus_free(bus);
                return 1;
        }
        snprintf(line, sizeof(line), "%s\n", plx_bus_get_unique_id(bus));
        (void)proc_write_all(fd, line, strlen(line));
        close(fd);

        while (!quit && r >= 0 && failed == 0)
                r = pump(bus, -1);
        if (r >= 0)
                r = plx_bus_flush(bus);
        if (r < 0)
                fprintf(stderr, "plexus-bench-large: service: %s\n", strerror(-r));
        plx_bus_free(bus);
        return r < 0 || failed < 0 ? 1 : 0;
}

static int call_start(LargeRun *run, int path) {
        CallState *s;
        int r;
        pid_t pid = 0;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->path = path;
        run->state = s;

        r = proc_spawn_service(service_main, run->o, &pid, s->dest, sizeof(s->dest));
        if (pid > 0)
                run->pids[run->n_pids++] = pid;
        if (r < 0)
                return r;
        return connect_bus(&s->bus, run->o->address, path, &s->error);
}

static int reply_sum(CallState *s, int r, plx_msg *reply, uint64_t *ret_sum) {
        const void *p;
        size_t n;

        if (r == -EREMOTEIO && reply)
                fprintf(stderr, "plexus-bench-large: call failed: %s: %s\n",
                        plx_msg_get_error_name(reply), plx_msg_get_error_message(reply) ?: "");
        if (r >= 0 && s->error < 0)
                r = s->error;
        if (r >= 0) {
                p = plx_msg_get_payload(reply, &n);
                if (n != sizeof(*ret_sum))
                        r = -EBADMSG;
                else
                        memcpy(ret_sum, p, sizeof(*ret_sum));
        }
        plx_msg_unref(reply);
        return r;
}

static int call_transfer(LargeRun *run, uint64_t seq) {
        CallState *s = run->state;
        plx_msg *reply = NULL;
        uint64_t sum = 0;
        int r;

        r = plx_bus_call(s->bus, s->dest, "Sum", run->buf, run->o->size, LARGE_CALL_TIMEOUT_USEC, &reply);
        r = reply_sum(s, r, reply, &sum);
        if (r < 0)
                return r;
        return large_check_sum(seq, sum, large_expected_sum(seq, run->o->size));
}

static int buffer_prepare(LargeRun *run, uint64_t seq) {
        CallState *s = run->state;
        int r;

        s->pending = plx_buffer_free(s->pending);
        r = plx_buffer_new(&s->pending, run->o->size);
        if (r < 0)
                return r;
        large_fill(plx_buffer_get_data(s->pending), run->o->size, seq);
        return 0;
}

static int buffer_transfer(LargeRun *run, uint64_t seq) {
        CallState *s = run->state;
        plx_buffer *buf = TAKE_PTR(s->pending);
        plx_msg *reply = NULL;
        uint64_t sum = 0;
        int r;

        r = plx_bus_call_buffer(s->bus, s->dest, "Sum", buf, run->o->size, LARGE_CALL_TIMEOUT_USEC, &reply);
        r = reply_sum(s, r, reply, &sum);
        if (r < 0)
                return r;
        return large_check_sum(seq, sum, large_expected_sum(seq, run->o->size));
}

/* The payload in calls that each fit one frame; the sums add up. */
static int inline_transfer(LargeRun *run, uint64_t seq) {
        CallState *s = run->state;
        uint64_t total = 0;
        size_t off = 0;
        int r;

        while (off < run->o->size) {
                size_t n = MIN((size_t)LARGE_INLINE_CHUNK, run->o->size - off);
                plx_msg *reply = NULL;
                uint64_t sum = 0;

                r = plx_bus_call(s->bus, s->dest, "Sum", run->buf + off, n, LARGE_CALL_TIMEOUT_USEC, &reply);
                r = reply_sum(s, r, reply, &sum);
                if (r < 0)
                        return r;
                total += sum;
                off += n;
        }
        return large_check_sum(seq, total, large_expected_sum(seq, run->o->size));
}

static int call_stop(LargeRun *run, int status) {
        CallState *s = run->state;
        int r = status;

        if (s && s->bus && status >= 0) {
                plx_msg *reply = NULL;

                r = plx_bus_call(s->bus, s->dest, "Quit", NULL, 0, LARGE_CALL_TIMEOUT_USEC, &reply);
                plx_msg_unref(reply);
                if (r < 0)
                        fprintf(stderr, "plexus-bench-large: Quit: %s\n", strerror(-r));
        }
        for (unsigned i = 0; i < run->n_pids; i++) {
                int q;

                if (r < 0)
                        kill(run->pids[i], SIGKILL);
                q = proc_wait(run->pids[i], PROC_TIMEOUT_MS);
                if (r >= 0 && q != 0) {
                        fprintf(stderr, "plexus-bench-large: service exited with status %d\n", q);
                        r = -EPROTO;
                }
        }
        run->n_pids = 0;
        if (s) {
                plx_buffer_free(s->pending);
                plx_bus_free(s->bus);
                free(s);
                run->state = NULL;
        }
        return status < 0 ? status : r;
}

static int process_vm_start(LargeRun *run) {
        return call_start(run, PLX_LARGE_PROCESS_VM);
}

static int memfd_start(LargeRun *run) {
        return call_start(run, PLX_LARGE_MEMFD);
}

static int inline_start(LargeRun *run) {
        return call_start(run, PLX_LARGE_INLINE);
}

const LargeMethod large_process_vm = {
        .name = "process-vm",
        .start = process_vm_start,
        .transfer = call_transfer,
        .stop = call_stop,
};

const LargeMethod large_memfd = {
        .name = "memfd",
        .start = memfd_start,
        .transfer = call_transfer,
        .stop = call_stop,
};

const LargeMethod large_buffer = {
        .name = "buffer",
        .own_buffer = true,
        .start = memfd_start,
        .prepare = buffer_prepare,
        .transfer = buffer_transfer,
        .stop = call_stop,
};

const LargeMethod large_inline = {
        .name = "inline",
        .start = inline_start,
        .transfer = inline_transfer,
        .stop = call_stop,
};

/* --- fan-out --------------------------------------------------------------- */

typedef struct Subscriber {
        uint64_t seen;
        int ack_fd;
        int error;
} Subscriber;

static int on_signal(plx_msg *signal, void *userdata) {
        Subscriber *sub = userdata;
        const void *payload;
        uint64_t sum;
        size_t size;
        int r;

        payload = plx_msg_get_payload(signal, &size);
        sum = large_sum(payload, size);
        r = proc_write_all(sub->ack_fd, &sum, sizeof(sum));
        if (r < 0 && sub->error == 0)
                sub->error = r;
        sub->seen++;
        return r;
}

static int subscriber_main(const LargeOptions *o, int ready_fd, int ack_fd) {
        Subscriber sub = { .ack_fd = ack_fd };
        uint64_t total = (uint64_t)o->warmup + o->reps;
        plx_bus *bus = NULL;
        int failed = 0, r;

        r = large_pin(o->receiver_cpu);
        if (r >= 0)
                r = connect_bus(&bus, o->address, PLX_LARGE_AUTO, &failed);
        if (r >= 0)
                r = plx_bus_subscribe(bus, NULL, LARGE_TOPIC, on_signal, &sub);
        if (r < 0) {
                fprintf(stderr, "plexus-bench-large: subscriber: %s\n", strerror(-r));
                (void)proc_write_all(ready_fd, "F", 1);
                plx_bus_free(bus);
                return 1;
        }
        (void)proc_write_all(ready_fd, "R", 1);
        close(ready_fd);

        while (sub.seen < total && r >= 0 && sub.error == 0 && failed == 0)
                r = pump(bus, -1);
        if (r >= 0)
                r = sub.error ?: failed;
        if (r < 0)
                fprintf(stderr, "plexus-bench-large: subscriber: %s after %" PRIu64 " signals\n",
                        strerror(-r), sub.seen);
        plx_bus_free(bus);
        return r < 0 ? 1 : 0;
}

typedef struct Fanout {
        CallState call;                 /* bus, path, pending buffer */
        int ack_fd;
} Fanout;

static int fanout_start(LargeRun *run, int path) {
        int ready[2] = { -1, -1 }, ack[2] = { -1, -1 }, r = 0;
        Fanout *f;
        char c;

        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->ack_fd = -1;
        f->call.path = path;
        run->state = f;

        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(ack, O_CLOEXEC) < 0) {
                r = -errno;
                goto finish;
        }
        for (unsigned i = 0; i < run->o->subscribers; i++) {
                pid_t pid = proc_fork();

                if (pid < 0) {
                        r = pid;
                        goto finish;
                }
                if (pid == 0) {
                        close(ready[0]);
                        close(ack[0]);
                        _exit(subscriber_main(run->o, ready[1], ack[1]));
                }
                run->pids[run->n_pids++] = pid;
        }
        ready[1] = plx_close(ready[1]);
        ack[1] = plx_close(ack[1]);
        for (unsigned i = 0; r >= 0 && i < run->o->subscribers; i++) {
                r = proc_read_exact(ready[0], &c, 1, PROC_TIMEOUT_MS);
                if (r >= 0 && c != 'R')
                        r = -EPROTO;
        }
        if (r >= 0)
                r = connect_bus(&f->call.bus, run->o->address, path, &f->call.error);
        if (r >= 0)
                f->ack_fd = TAKE_FD(ack[0]);
finish:
        plx_close(ready[0]);
        plx_close(ready[1]);
        plx_close(ack[0]);
        plx_close(ack[1]);
        return r;
}

/* Until every subscriber's sum is in; the bus is served meanwhile. */
static int fanout_collect(LargeRun *run, Fanout *f, uint64_t seq) {
        uint64_t want = large_expected_sum(seq, run->o->size);
        unsigned n = 0;
        int r;

        r = plx_bus_flush(f->call.bus);
        while (r >= 0 && n < run->o->subscribers) {
                struct pollfd p[2] = {
                        { .fd = f->ack_fd, .events = POLLIN },
                        { .fd = plx_bus_get_fd(f->call.bus), .events = (short)plx_bus_get_events(f->call.bus) },
                };
                uint64_t sum;

                while ((r = plx_bus_process(f->call.bus)) > 0)
                        ;
                if (r < 0)
                        break;
                if (f->call.error < 0)
                        return f->call.error;
                if (poll(p, 2, PROC_TIMEOUT_MS) == 0)
                        return -ETIMEDOUT;
                if (!(p[0].revents & (POLLIN | POLLHUP)))
                        continue;
                r = proc_read_exact(f->ack_fd, &sum, sizeof(sum), PROC_TIMEOUT_MS);
                if (r >= 0)
                        r = large_check_sum(seq, sum, want);
                n++;
        }
        return r < 0 ? r : 0;
}

static int fanout_transfer(LargeRun *run, uint64_t seq) {
        Fanout *f = run->state;
        int r;

        r = plx_bus_publish(f->call.bus, LARGE_TOPIC, run->buf, run->o->size);
        if (r < 0)
                return r;
        return fanout_collect(run, f, seq);
}

static int fanout_buffer_transfer(LargeRun *run, uint64_t seq) {
        Fanout *f = run->state;
        int r;

        r = plx_bus_publish_buffer(f->call.bus, LARGE_TOPIC, TAKE_PTR(f->call.pending), run->o->size);
        if (r < 0)
                return r;
        return fanout_collect(run, f, seq);
}

static int fanout_buffer_prepare(LargeRun *run, uint64_t seq) {
        Fanout *f = run->state;
        int r;

        f->call.pending = plx_buffer_free(f->call.pending);
        r = plx_buffer_new(&f->call.pending, run->o->size);
        if (r < 0)
                return r;
        large_fill(plx_buffer_get_data(f->call.pending), run->o->size, seq);
        return 0;
}

static int fanout_stop(LargeRun *run, int status) {
        Fanout *f = run->state;
        int r = status;

        /* Subscribers leave by themselves after the last signal. */
        if (f && f->call.bus && status >= 0)
                r = plx_bus_flush(f->call.bus);
        for (unsigned i = 0; i < run->n_pids; i++) {
                int q;

                if (r < 0)
                        kill(run->pids[i], SIGKILL);
                q = proc_wait(run->pids[i], PROC_TIMEOUT_MS);
                if (r >= 0 && q != 0) {
                        fprintf(stderr, "plexus-bench-large: subscriber exited with status %d\n", q);
                        r = -EPROTO;
                }
        }
        run->n_pids = 0;
        if (f) {
                plx_close(f->ack_fd);
                plx_buffer_free(f->call.pending);
                plx_bus_free(f->call.bus);
                free(f);
                run->state = NULL;
        }
        return status < 0 ? status : r;
}

static int fanout_memfd_start(LargeRun *run) {
        return fanout_start(run, PLX_LARGE_MEMFD);
}

static int fanout_process_vm_start(LargeRun *run) {
        return fanout_start(run, PLX_LARGE_PROCESS_VM);
}

const LargeMethod large_fanout_memfd = {
        .name = "fanout-memfd",
        .fanout = true,
        .start = fanout_memfd_start,
        .transfer = fanout_transfer,
        .stop = fanout_stop,
};

const LargeMethod large_fanout_buffer = {
        .name = "fanout-buffer",
        .fanout = true,
        .own_buffer = true,
        .start = fanout_memfd_start,
        .prepare = fanout_buffer_prepare,
        .transfer = fanout_buffer_transfer,
        .stop = fanout_stop,
};

const LargeMethod large_fanout_process_vm = {
        .name = "fanout-process-vm",
        .fanout = true,
        .start = fanout_process_vm_start,
        .transfer = fanout_transfer,
        .stop = fanout_stop,
};
