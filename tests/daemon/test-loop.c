/*
 * Unit tests for the edge-triggered event loop (daemon/loop.c).
 *
 * Sources sit on pipes and an eventfd. Covers the ready list: a source is on
 * it exactly while it has cached events its owner selected; select,
 * deselect and clear move it on and off without syscalls; cached readiness
 * survives rounds although the kernel reports each edge once; hang-ups are
 * folded into EPOLLIN|EPOLLOUT. Dispatch rounds follow the broker's model
 * (each source moved back to the loop's ready list before its callback):
 * a source removed during a round, by itself or by another source's
 * callback, is not dispatched again.
 */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "loop.h"
#include "util.h"

typedef struct TestSource {
        LoopSource source;
        int fds[2];             /* pipe: [0] is registered, [1] is the write end */
        unsigned n_dispatched;
        struct TestSource *victim;      /* removed by this source's callback */
} TestSource;

typedef struct Fixture {
        Loop loop;
        List round;             /* not on the stack: a failed test leaves sources linked here */
        TestSource src[3];
} Fixture;

static int setup_loop(void **state) {
        Fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        f->loop = (Loop) LOOP_NULL(f->loop);
        list_init(&f->round);
        if (loop_init(&f->loop) < 0)
                return -1;
        for (size_t i = 0; i < 3; i++) {
                TestSource *s = &f->src[i];

                s->source = (LoopSource) LOOP_SOURCE_NULL(s->source);
                if (pipe2(s->fds, O_NONBLOCK | O_CLOEXEC) < 0)
                        return -1;
                if (loop_source_add(&f->loop, &s->source, LOOP_KIND_PEER, s->fds[0], EPOLLIN) < 0)
                        return -1;
        }
        /* A broken loop would block loop_poll() forever. */
        alarm(20);
        *state = f;
        return 0;
}

static int teardown_loop(void **state) {
        Fixture *f = *state;

        alarm(0);
        for (size_t i = 0; i < 3; i++) {
                /* EPOLL_CTL_DEL before close(); a no-op for sources already removed. */
                loop_source_remove(&f->src[i].source);
                plx_close(f->src[i].fds[0]);
                plx_close(f->src[i].fds[1]);
        }
        assert_true(list_is_empty(&f->loop.ready));
        loop_deinit(&f->loop);
        assert_int_equal(f->loop.epoll_fd, -1);
        free(f);
        return 0;
}

static void make_readable(TestSource *s) {
        assert_int_equal(write(s->fds[1], "x", 1), 1);
}

static void drain(TestSource *s) {
        char buf[64];

        while (read(s->fds[0], buf, sizeof(buf)) > 0)
                ;
}

static bool on_list(const List *head, const LoopSource *s) {
        for (const List *l = head->next; l != head; l = l->next)
                if (l == &s->ready_link)
                        return true;
        return false;
}

static size_t list_length(const List *head) {
        size_t n = 0;

        for (const List *l = head->next; l != head; l = l->next)
                n++;
        return n;
}

/* One broker round: move each source back to the loop's list, then dispatch. */
static void run_round(Fixture *f, List *round) {
        LoopSource *s;

        while ((s = list_first_entry(round, LoopSource, ready_link))) {
                TestSource *ts = container_of(s, TestSource, source);

                list_unlink(&s->ready_link);
                list_append(&f->loop.ready, &s->ready_link);
                ts->n_dispatched++;
                if (ts->victim)
                        loop_source_remove(&ts->victim->source);
        }
}

static void test_loop_add(void **state) {
        Fixture *f = *state;
        LoopSource *s = &f->src[0].source;
        LoopSource dup = LOOP_SOURCE_NULL(dup);

        assert_int_equal(s->kind, LOOP_KIND_PEER);
        assert_int_equal(s->fd, f->src[0].fds[0]);
        assert_int_equal(s->mask, EPOLLIN);
        assert_int_equal(s->events, 0);
        assert_ptr_equal(s->loop, &f->loop);
        assert_false(list_is_linked(&s->ready_link));

        /* The same fd cannot be registered twice; a failed add leaves the source alone. */
        assert_int_equal(loop_source_add(&f->loop, &dup, LOOP_KIND_PEER, s->fd, EPOLLIN), -EEXIST);
        assert_null(dup.loop);
        assert_int_equal(dup.fd, -1);
}

static void test_loop_event_reported(void **state) {
        Fixture *f = *state;
        List *round = &f->round;
        LoopSource *s = &f->src[1].source;

        make_readable(&f->src[1]);
        assert_int_equal(loop_poll(&f->loop, round), 0);

        /* Only the readable source, handed out in the round, not on the loop's list. */
        assert_int_equal(list_length(round), 1);
        assert_true(on_list(round, s));
        assert_true(list_is_empty(&f->loop.ready));
        assert_true(s->events & EPOLLIN);
        assert_true(loop_source_is_ready(s, EPOLLIN));
        assert_false(loop_source_is_ready(&f->src[0].source, EPOLLIN));

        run_round(f, round);
        assert_int_equal(f->src[1].n_dispatched, 1);
        assert_true(on_list(&f->loop.ready, s));
        drain(&f->src[1]);
        loop_source_clear(s, EPOLLIN);
        assert_false(list_is_linked(&s->ready_link));
}

static void test_loop_select_deselect_clear(void **state) {
        Fixture *f = *state;
        List *round = &f->round;
        LoopSource *s = &f->src[0].source;

        /* Interested in nothing: the event is cached but the source is not ready. */
        loop_source_deselect(s, EPOLLIN);
        assert_int_equal(s->mask, 0);
        make_readable(&f->src[0]);
        make_readable(&f->src[2]);      /* something else, so loop_poll() returns */
        assert_int_equal(loop_poll(&f->loop, round), 0);
        assert_true(s->events & EPOLLIN);
        assert_false(on_list(round, s));
        assert_false(list_is_linked(&s->ready_link));
        assert_false(loop_source_is_ready(s, EPOLLIN));
        run_round(f, round);
        assert_int_equal(f->src[0].n_dispatched, 0);
        loop_source_clear(&f->src[2].source, EPOLLIN);

        /* Selecting puts it on the ready list without a syscall. */
        loop_source_select(s, EPOLLIN);
        assert_true(on_list(&f->loop.ready, s));
        assert_true(loop_source_is_ready(s, EPOLLIN));
        /* Selecting again does not link it twice. */
        loop_source_select(s, EPOLLIN | EPOLLOUT);
        assert_int_equal(list_length(&f->loop.ready), 1);

        /* Deselecting keeps the cached event... */
        loop_source_deselect(s, EPOLLIN | EPOLLOUT);
        assert_false(list_is_linked(&s->ready_link));
        assert_true(s->events & EPOLLIN);
        /* ...so selecting again brings the source back. */
        loop_source_select(s, EPOLLIN);
        assert_true(on_list(&f->loop.ready, s));

        /* Interest in an event that is not cached does not make it ready. */
        loop_source_deselect(s, EPOLLIN);
        loop_source_select(s, EPOLLOUT);
        assert_false(list_is_linked(&s->ready_link));
        loop_source_select(s, EPOLLIN);
        assert_true(list_is_linked(&s->ready_link));

        /* Clearing other events keeps it; clearing EPOLLIN drops it for good. */
        loop_source_clear(s, EPOLLOUT);
        assert_true(list_is_linked(&s->ready_link));
        loop_source_clear(s, EPOLLIN);
        assert_false(list_is_linked(&s->ready_link));
        assert_false(s->events & EPOLLIN);
        loop_source_select(s, EPOLLIN);
        assert_false(list_is_linked(&s->ready_link));
        assert_true(list_is_empty(&f->loop.ready));
        drain(&f->src[0]);
        drain(&f->src[2]);
}

static void test_loop_edge_cached(void **state) {
        Fixture *f = *state;
        List *round = &f->round;
        LoopSource *s = &f->src[0].source;

        make_readable(&f->src[0]);
        assert_int_equal(loop_poll(&f->loop, round), 0);
        assert_true(on_list(round, s));
        run_round(f, round);

        /*
         * The callback did not read to EAGAIN, so the source stays ready:
         * the next round has it again (epoll_wait() must not sleep), once,
         * although the kernel reports no new edge.
         */
        assert_int_equal(loop_poll(&f->loop, round), 0);
        assert_int_equal(list_length(round), 1);
        assert_true(on_list(round, s));
        run_round(f, round);

        /* A new edge while already ready does not duplicate it. */
        make_readable(&f->src[0]);
        assert_int_equal(loop_poll(&f->loop, round), 0);
        assert_int_equal(list_length(round), 1);
        run_round(f, round);
        assert_int_equal(f->src[0].n_dispatched, 3);

        /* EAGAIN: cleared, off the list; new data brings a new edge. */
        drain(&f->src[0]);
        loop_source_clear(s, EPOLLIN);
        assert_true(list_is_empty(&f->loop.ready));
        make_readable(&f->src[1]);
        make_readable(&f->src[0]);
        assert_int_equal(loop_poll(&f->loop, round), 0);
        assert_int_equal(list_length(round), 2);
        assert_true(on_list(round, s));
        run_round(f, round);
        drain(&f->src[0]);
        drain(&f->src[1]);
        loop_source_clear(s, EPOLLIN);
        loop_source_clear(&f->src[1].source, EPOLLIN);
}

static void test_loop_remove_during_round(void **state) {
        Fixture *f = *state;
        List *round = &f->round;
        TestSource *first, *middle, *last;

        for (size_t i = 0; i < 3; i++)
                make_readable(&f->src[i]);
        assert_int_equal(loop_poll(&f->loop, round), 0);
        assert_int_equal(list_length(round), 3);

        /* epoll decides the order: the first source removes the last one. */
        first = container_of(round->next, TestSource, source.ready_link);
        middle = container_of(round->next->next, TestSource, source.ready_link);
        last = container_of(round->prev, TestSource, source.ready_link);
        first->victim = last;
        /* And the middle one removes itself. */
        middle->victim = middle;

        run_round(f, round);
        assert_int_equal(first->n_dispatched, 1);
        assert_int_equal(middle->n_dispatched, 1);
        assert_int_equal(last->n_dispatched, 0);

        assert_null(last->source.loop);
        assert_int_equal(last->source.fd, -1);
        assert_false(list_is_linked(&last->source.ready_link));
        assert_null(middle->source.loop);
        assert_false(list_is_linked(&middle->source.ready_link));
        assert_true(on_list(&f->loop.ready, &first->source));
        assert_int_equal(list_length(&f->loop.ready), 1);

        /* Removed sources get no events any more, even with new data. */
        make_readable(last);
        make_readable(middle);
        assert_int_equal(loop_poll(&f->loop, round), 0);
        assert_int_equal(list_length(round), 1);
        assert_true(on_list(round, &first->source));
        run_round(f, round);
        assert_int_equal(last->n_dispatched, 0);
        assert_int_equal(middle->n_dispatched, 1);

        /* Removing twice is harmless. */
        loop_source_remove(&last->source);
        drain(first);
        loop_source_clear(&first->source, EPOLLIN);
}

static void test_loop_hangup(void **state) {
        Fixture *f = *state;
        List *round = &f->round;
        LoopSource *s = &f->src[0].source;

        /* Only interested in EPOLLOUT, which a pipe's read end never reports... */
        loop_source_deselect(s, EPOLLIN);
        loop_source_select(s, EPOLLOUT);
        /* ...but a hang-up is folded into both directions. */
        f->src[0].fds[1] = plx_close(f->src[0].fds[1]);
        assert_int_equal(loop_poll(&f->loop, round), 0);
        assert_true(on_list(round, s));
        assert_true(s->events & EPOLLHUP);
        assert_true(s->events & EPOLLIN);
        assert_true(s->events & EPOLLOUT);
        assert_true(loop_source_is_ready(s, EPOLLOUT));
        /* Not selected, so not ready, although cached. */
        assert_false(loop_source_is_ready(s, EPOLLIN));
        run_round(f, round);
        loop_source_clear(s, EPOLLIN | EPOLLOUT | EPOLLHUP);
        assert_false(list_is_linked(&s->ready_link));
}

static void test_loop_eventfd(void **state) {
        Fixture *f = *state;
        List *round = &f->round;
        LoopSource ev = LOOP_SOURCE_NULL(ev);
        uint64_t v = 1;
        int fd;

        fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(loop_source_add(&f->loop, &ev, LOOP_KIND_WAKEUP, fd, EPOLLIN), 0);

        /* An eventfd is writable at once, but output is not registered unless selected. */
        make_readable(&f->src[0]);
        assert_int_equal(loop_poll(&f->loop, round), 0);
        assert_false(ev.events & EPOLLOUT);
        assert_false(ev.events & EPOLLIN);
        assert_false(on_list(round, &ev));
        run_round(f, round);
        drain(&f->src[0]);
        loop_source_clear(&f->src[0].source, EPOLLIN);

        /* A wakeup. */
        assert_int_equal(write(fd, &v, sizeof(v)), sizeof(v));
        assert_int_equal(loop_poll(&f->loop, round), 0);
        assert_true(on_list(round, &ev));
        assert_int_equal(list_length(round), 1);
        assert_int_equal(ev.kind, LOOP_KIND_WAKEUP);
        list_unlink(&ev.ready_link);
        list_append(&f->loop.ready, &ev.ready_link);
        assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
        loop_source_clear(&ev, EPOLLIN);
        assert_true(list_is_empty(&f->loop.ready));

        loop_source_remove(&ev);
        assert_null(ev.loop);
        plx_close(fd);
}

/*
 * Output is registered only while selected: a reader taking frames from a
 * socket must not wake the loop (each wake-up would preempt the reader on a
 * busy CPU), and selecting output reports the current state at once.
 */
static void test_loop_output_only_while_selected(void **state) {
        Fixture *f = *state;
        List *round = &f->round;
        LoopSource s = LOOP_SOURCE_NULL(s);
        struct epoll_event evs[4];
        char buf[64] = "x";
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(loop_source_add(&f->loop, &s, LOOP_KIND_PEER, sv[0], EPOLLIN), 0);

        /* The other end reads what we sent: no event at all. */
        assert_int_equal(send(sv[0], buf, sizeof(buf), 0), sizeof(buf));
        assert_int_equal(recv(sv[1], buf, sizeof(buf), 0), sizeof(buf));
        assert_int_equal(epoll_wait(f->loop.epoll_fd, evs, 4, 0), 0);

        /* Selected: the socket is writable, and that is reported without a new edge. */
        loop_source_select(&s, EPOLLOUT);
        assert_int_equal(loop_poll(&f->loop, round), 0);
        assert_true(on_list(round, &s));
        assert_true(loop_source_is_ready(&s, EPOLLOUT));
        list_unlink(&s.ready_link);
        list_append(&f->loop.ready, &s.ready_link);

        /* Deselected: the cached edge goes (no edge would refresh it) and reads wake nobody again. */
        loop_source_deselect(&s, EPOLLOUT);
        assert_false(s.events & EPOLLOUT);
        assert_false(list_is_linked(&s.ready_link));
        assert_int_equal(send(sv[0], buf, sizeof(buf), 0), sizeof(buf));
        assert_int_equal(recv(sv[1], buf, sizeof(buf), 0), sizeof(buf));
        assert_int_equal(epoll_wait(f->loop.epoll_fd, evs, 4, 0), 0);

        loop_source_remove(&s);
        plx_close(sv[0]);
        plx_close(sv[1]);
}

static void test_loop_unregistered_source(void **state) {
        LoopSource s = LOOP_SOURCE_NULL(s);

        /* Interest can be set before registration; nothing is linked. */
        loop_source_select(&s, EPOLLIN);
        assert_int_equal(s.mask, EPOLLIN);
        assert_false(list_is_linked(&s.ready_link));
        loop_source_deselect(&s, EPOLLIN);
        assert_int_equal(s.mask, 0);
        loop_source_clear(&s, EPOLLIN);
        loop_source_remove(&s);
        assert_int_equal(s.fd, -1);
        assert_false(list_is_linked(&s.ready_link));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_loop_add, setup_loop, teardown_loop),
                cmocka_unit_test_setup_teardown(test_loop_event_reported, setup_loop, teardown_loop),
                cmocka_unit_test_setup_teardown(test_loop_select_deselect_clear, setup_loop, teardown_loop),
                cmocka_unit_test_setup_teardown(test_loop_edge_cached, setup_loop, teardown_loop),
                cmocka_unit_test_setup_teardown(test_loop_remove_during_round, setup_loop, teardown_loop),
                cmocka_unit_test_setup_teardown(test_loop_hangup, setup_loop, teardown_loop),
                cmocka_unit_test_setup_teardown(test_loop_eventfd, setup_loop, teardown_loop),
                cmocka_unit_test_setup_teardown(test_loop_output_only_while_selected, setup_loop, teardown_loop),
                cmocka_unit_test(test_loop_unregistered_source),
        };

        return cmocka_run_group_tests_name("Event loop", tests, NULL, NULL);
}
