/*
 * The public API of libplexus, linked as a shared library and used through
 * <plexus/plexus.h> only: every exported plx_* symbol (libplexus.sym) is
 * called at least once against a real broker, the way c-rbtree's test-api
 * uses every symbol of its ABI. Behaviour in depth is the integration
 * suite's job; this test proves that the ABI is complete and callable.
 *
 * Everything runs in one process with two connections, "service" and
 * "client", driven alternately: by a poll() loop over
 * plx_bus_get_fd/get_events/get_timeout/process, by plx_bus_run(), and by an
 * sd-event loop through plx_bus_attach_event().
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <cmocka.h>

#include <plexus/plexus.h>

#include "harness.h"
#include "service.h"

typedef struct Api {
        plx_bus *service;
        plx_bus *client;

        uint64_t call_serial;           /* of the last CALL the service saw */
        bool call_checked;
        bool no_reply_seen;

        plx_msg *reply;
        bool reply_done;

        plx_msg *signal;
        bool signal_done;

        plx_msg *error;
        bool error_done;

        plx_msg *fd_signal;
        bool fd_signal_done;
} Api;

static int on_echo(plx_msg *call, void *userdata) {
        Api *api = userdata;
        const void *p;
        size_t n;

        assert_int_equal(plx_msg_get_kind(call), PLX_MSG_CALL);
        assert_int_not_equal(plx_msg_get_serial(call), 0);
        assert_int_equal(plx_msg_get_reply_serial(call), 0);
        assert_string_equal(plx_msg_get_sender(call), plx_bus_get_unique_id(api->client));
        assert_string_equal(plx_msg_get_destination(call), plx_bus_get_unique_id(api->service));
        assert_string_equal(plx_msg_get_member(call), "Echo");
        assert_null(plx_msg_get_topic(call));
        assert_null(plx_msg_get_error_name(call));
        assert_null(plx_msg_get_error_message(call));
        assert_int_not_equal(plx_msg_get_sequence(call), 0);
        assert_int_not_equal(plx_msg_get_delivery(call), 0);
        assert_int_equal(plx_msg_get_sender_uid(call), getuid());
        assert_int_equal(plx_msg_get_sender_pid(call), getpid());
        assert_ptr_equal(plx_msg_get_bus(call), api->service);

        if (plx_msg_get_no_reply(call)) {
                api->no_reply_seen = true;
                /* A call that expects no reply is "answered" by doing nothing. */
                assert_int_equal(plx_msg_reply(call, NULL, 0), 0);
                return 0;
        }

        /* Every call to Echo with a reply is made with a 5 s timeout. */
        assert_true(plx_msg_get_timeout_ms(call) > 0);
        assert_true(plx_msg_get_timeout_ms(call) <= 5000);
        api->call_serial = plx_msg_get_serial(call);
        api->call_checked = true;
        p = plx_msg_get_payload(call, &n);
        assert_int_equal(plx_msg_reply(call, p, n), 0);
        assert_int_equal(plx_msg_reply(call, p, n), -EALREADY);
        return 0;
}

static int on_fail(plx_msg *call, void *userdata) {
        return plx_msg_reply_error(call, "org.example.Error.Api", "as requested");
}

static int on_quit(plx_msg *call, void *userdata) {
        Api *api = userdata;

        plx_bus_exit(api->service, 7);
        return 0;
}

static int on_reply(plx_msg *msg, void *userdata) {
        Api *api = userdata;

        api->reply = plx_msg_ref(msg);
        api->reply_done = true;
        return 0;
}

static int on_signal(plx_msg *msg, void *userdata) {
        Api *api = userdata;

        api->signal = plx_msg_ref(msg);
        api->signal_done = true;
        return 0;
}

static int on_error(plx_msg *msg, void *userdata) {
        Api *api = userdata;

        api->error = plx_msg_ref(msg);
        api->error_done = true;
        return 0;
}

/* Our own loop over both connections until *done, bounded. */
static void poll_until(Api *api, const bool *done) {
        uint64_t deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        plx_bus *buses[2] = { api->service, api->client };

        while (!*done) {
                struct pollfd pfd[2];
                int timeout = -1, r;

                for (size_t i = 0; i < 2; i++) {
                        int ms;

                        while ((r = plx_bus_process(buses[i])) > 0)
                                ;
                        assert_int_equal(r, 0);
                        assert_int_equal(plx_bus_get_timeout(buses[i], &ms), 0);
                        if (ms >= 0 && (timeout < 0 || ms < timeout))
                                timeout = ms;
                        pfd[i].fd = plx_bus_get_fd(buses[i]);
                        assert_true(pfd[i].fd >= 0);
                        r = plx_bus_get_events(buses[i]);
                        assert_true(r >= 0);
                        assert_true(r & POLLIN);
                        pfd[i].events = (short)r;
                }
                if (*done)
                        break;
                assert_true(harness_now_ms() < deadline);
                if (timeout < 0 || timeout > 100)
                        timeout = 100;
                assert_true(poll(pfd, 2, timeout) >= 0);
        }
}

static void test_null_destructors(void **state) {
        plx_bus *bus = NULL;
        plx_msg *msg = NULL;
        plx_slot *slot = NULL;

        assert_null(plx_bus_free(NULL));
        assert_null(plx_msg_unref(NULL));
        assert_null(plx_slot_free(NULL));
        plx_bus_freep(&bus);
        plx_msg_unrefp(&msg);
        plx_slot_freep(&slot);
}

static void test_api(void **state) {
        Harness *h = *state;
        Api api = {};
        plx_slot *method_slot = NULL, *sub_slot = NULL, *call_slot = NULL;
        const void *p;
        size_t n;
        int ms;

        /* Connection: the default address ($PLEXUS_BUS_ADDRESS) and an explicit one. */
        assert_int_equal(plx_bus_new(&api.service, NULL, "api-service"), 0);
        assert_int_equal(plx_bus_new(&api.client, h->address, NULL), 0);
        assert_int_equal(plx_bus_get_unique_id(api.service)[0], ':');
        assert_string_not_equal(plx_bus_get_unique_id(api.service), plx_bus_get_unique_id(api.client));
        assert_true(plx_bus_get_fd(api.client) >= 0);
        assert_true(plx_bus_get_events(api.client) & POLLIN);
        assert_int_equal(plx_bus_get_timeout(api.client, &ms), 0);
        assert_int_equal(plx_bus_flush(api.client), 0);
        assert_int_equal(plx_bus_get_n_missed(api.client), 0);

        /* Methods. */
        assert_int_equal(plx_bus_add_method(api.service, NULL, "Echo", on_echo, &api), 0);
        assert_int_equal(plx_bus_add_method(api.service, NULL, "Echo", on_echo, &api), -EEXIST);
        assert_int_equal(plx_bus_add_method(api.service, &method_slot, "Fail", on_fail, &api), 0);
        assert_int_equal(plx_bus_add_method(api.service, NULL, "Quit", on_quit, &api), 0);
        assert_int_equal(plx_bus_add_method(api.service, NULL, "", on_fail, &api), -EINVAL);

        /* Async call, own poll loop. */
        assert_int_equal(plx_bus_call_async(api.client, &call_slot, plx_bus_get_unique_id(api.service), "Echo",
                                            "ping", 4, 5000 * 1000, on_reply, &api), 0);
        poll_until(&api, &api.reply_done);
        assert_true(api.call_checked);
        assert_int_equal(plx_msg_get_kind(api.reply), PLX_MSG_REPLY);
        assert_int_equal(plx_msg_get_reply_serial(api.reply), api.call_serial);
        assert_string_equal(plx_msg_get_sender(api.reply), plx_bus_get_unique_id(api.service));
        p = plx_msg_get_payload(api.reply, &n);
        assert_int_equal(n, 4);
        assert_memory_equal(p, "ping", 4);
        assert_ptr_equal(plx_msg_ref(api.reply), api.reply);
        assert_null(plx_msg_unref(api.reply));
        api.reply = plx_msg_unref(api.reply);
        call_slot = plx_slot_free(call_slot);

        /* Remote error through the async path; then the method is unregistered. */
        api.reply_done = false;
        assert_int_equal(plx_bus_call_async(api.client, NULL, plx_bus_get_unique_id(api.service), "Fail",
                                            NULL, 0, PLX_TIMEOUT_DEFAULT, on_reply, &api), 0);
        poll_until(&api, &api.reply_done);
        assert_int_equal(plx_msg_get_kind(api.reply), PLX_MSG_ERROR);
        assert_string_equal(plx_msg_get_error_name(api.reply), "org.example.Error.Api");
        assert_string_equal(plx_msg_get_error_message(api.reply), "as requested");
        api.reply = plx_msg_unref(api.reply);
        method_slot = plx_slot_free(method_slot);
        api.reply_done = false;
        assert_int_equal(plx_bus_call_async(api.client, NULL, plx_bus_get_unique_id(api.service), "Fail",
                                            NULL, 0, PLX_TIMEOUT_DEFAULT, on_reply, &api), 0);
        poll_until(&api, &api.reply_done);
        assert_string_equal(plx_msg_get_error_name(api.reply), PLX_ERROR_UNKNOWN_METHOD);
        api.reply = plx_msg_unref(api.reply);

        /* Sync call: the broker answers by itself. */
        assert_int_equal(plx_bus_call(api.client, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, &api.reply), 0);
        assert_string_equal(plx_msg_get_sender(api.reply), PLX_BROKER);
        api.reply = plx_msg_unref(api.reply);

        /* A call expecting no reply. */
        assert_int_equal(plx_bus_send_call(api.client, plx_bus_get_unique_id(api.service), "Echo", "x", 1), 0);
        poll_until(&api, &api.no_reply_seen);

        /* Errors that answer no call. */
        plx_bus_set_error_handler(api.client, on_error, &api);
        assert_int_equal(plx_bus_send_call(api.client, ":999999", "Echo", NULL, 0), 0);
        poll_until(&api, &api.error_done);
        assert_string_equal(plx_msg_get_error_name(api.error), PLX_ERROR_SERVICE_UNKNOWN);
        api.error = plx_msg_unref(api.error);
        plx_bus_set_error_handler(api.client, NULL, NULL);

        /* Publish/subscribe. */
        assert_int_equal(plx_bus_subscribe(api.client, &sub_slot, "api/+", on_signal, &api), 0);
        assert_int_equal(plx_bus_publish(api.service, "api/topic", "payload", 7), 0);
        poll_until(&api, &api.signal_done);
        assert_int_equal(plx_msg_get_kind(api.signal), PLX_MSG_SIGNAL);
        assert_string_equal(plx_msg_get_topic(api.signal), "api/topic");
        assert_null(plx_msg_get_member(api.signal));
        assert_string_equal(plx_msg_get_sender(api.signal), plx_bus_get_unique_id(api.service));
        assert_int_equal(plx_msg_get_timeout_ms(api.signal), 0);
        assert_int_equal(plx_msg_get_no_reply(api.signal), 0);
        p = plx_msg_get_payload(api.signal, &n);
        assert_int_equal(n, 7);
        assert_memory_equal(p, "payload", 7);
        api.signal = plx_msg_unref(api.signal);
        sub_slot = plx_slot_free(sub_slot);
        assert_int_equal(plx_bus_get_n_missed(api.client), 0);

        /* plx_bus_run() until a handler calls plx_bus_exit(). */
        assert_int_equal(plx_bus_send_call(api.client, plx_bus_get_unique_id(api.service), "Quit", NULL, 0), 0);
        assert_int_equal(plx_bus_flush(api.client), 0);
        assert_int_equal(plx_bus_run(api.service), 7);

        api.client = plx_bus_free(api.client);
        api.service = plx_bus_free(api.service);
        assert_null(api.client);
}

static int on_event_reply(plx_msg *msg, void *userdata) {
        sd_event *event = userdata;

        assert_int_equal(plx_msg_get_kind(msg), PLX_MSG_REPLY);
        return sd_event_exit(event, 42);
}

static int on_event_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), -ETIMEDOUT);
}

static void test_sd_event(void **state) {
        Harness *h = *state;
        sd_event *event = NULL;
        sd_event_source *timeout = NULL;
        plx_bus *service = NULL, *client = NULL;
        Api api = {};

        assert_int_equal(sd_event_new(&event), 0);
        assert_int_equal(plx_bus_new(&service, h->address, "event-service"), 0);
        assert_int_equal(plx_bus_new(&client, h->address, "event-client"), 0);
        api.service = service;
        api.client = client;
        assert_int_equal(plx_bus_add_method(service, NULL, "Echo", on_echo, &api), 0);

        assert_int_equal(plx_bus_attach_event(service, event, SD_EVENT_PRIORITY_NORMAL), 0);
        assert_int_equal(plx_bus_attach_event(client, event, SD_EVENT_PRIORITY_NORMAL), 0);
        assert_int_equal(plx_bus_attach_event(client, event, SD_EVENT_PRIORITY_NORMAL), -EBUSY);
        assert_true(sd_event_add_time_relative(event, &timeout, CLOCK_MONOTONIC,
                                               (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS) * 1000, 0,
                                               on_event_timeout, NULL) >= 0);

        assert_int_equal(plx_bus_call_async(client, NULL, plx_bus_get_unique_id(service), "Echo", "ev", 2,
                                            5000 * 1000, on_event_reply, event), 0);
        assert_int_equal(sd_event_loop(event), 42);
        assert_true(api.call_checked);

        assert_int_equal(plx_bus_detach_event(client), 0);
        assert_int_equal(plx_bus_detach_event(client), 0);
        assert_int_equal(plx_bus_detach_event(service), 0);
        timeout = sd_event_source_unref(timeout);
        plx_bus_free(client);
        plx_bus_free(service);
        event = sd_event_unref(event);
}

/* Attached with a NULL loop: the thread's default sd-event loop. */
static void test_sd_event_default(void **state) {
        Harness *h = *state;
        sd_event *event = NULL;
        plx_bus *bus = NULL;

        assert_int_equal(plx_bus_new(&bus, h->address, "default-loop"), 0);
        assert_int_equal(plx_bus_attach_event(bus, NULL, 0), 0);
        assert_true(sd_event_default(&event) >= 0);
        assert_int_equal(plx_bus_call_async(bus, NULL, PLX_BROKER, "Ping", NULL, 0, 5000 * 1000, on_event_reply,
                                            event), 0);
        assert_int_equal(sd_event_loop(event), 42);
        assert_int_equal(plx_bus_detach_event(bus), 0);
        plx_bus_free(bus);
        event = sd_event_unref(event);
}

/* --- names and fd passing --------------------------------------------- */

static int on_take_fd(plx_msg *call, void *userdata) {
        char buf[8] = {};
        int fd, pipefd[2], r;

        assert_int_equal(plx_msg_get_sender_gid(call), getgid());
        assert_int_equal(plx_msg_get_n_fds(call), 1);
        assert_true(plx_msg_get_fd(call, 0) >= 0);
        assert_int_equal(plx_msg_get_fd(call, 1), -EINVAL);
        fd = plx_msg_take_fd(call, 0);
        assert_true(fd >= 0);
        assert_int_equal(plx_msg_take_fd(call, 0), -EBADF);
        assert_int_equal(plx_msg_get_fd(call, 0), -EBADF);
        assert_int_equal(read(fd, buf, sizeof(buf) - 1), 4);
        assert_string_equal(buf, "ping");
        close(fd);

        /* Answer with a pipe of our own; the receiver gets a duplicate. */
        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        assert_int_equal(write(pipefd[1], "pong", 4), 4);
        close(pipefd[1]);
        r = plx_msg_reply_with_fds(call, NULL, 0, &pipefd[0], 1);
        close(pipefd[0]);
        return r;
}

static int on_fd_signal(plx_msg *msg, void *userdata) {
        Api *api = userdata;

        api->fd_signal = plx_msg_ref(msg);
        api->fd_signal_done = true;
        return 0;
}

static void read_fd_of(plx_msg *m, const char *want) {
        char buf[8] = {};

        assert_int_equal(plx_msg_get_n_fds(m), 1);
        assert_int_equal(read(plx_msg_get_fd(m, 0), buf, sizeof(buf) - 1), (ssize_t)strlen(want));
        assert_string_equal(buf, want);
}

static int one_pipe(const char *text) {
        int p[2];

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(write(p[1], text, strlen(text)), (ssize_t)strlen(text));
        close(p[1]);
        return p[0];
}

static void test_api_names_and_fds(void **state) {
        Harness *h = *state;
        Api api = {};
        _cleanup_msg_ plx_msg *reply = NULL;
        const char *name, *old_owner, *new_owner;
        char *owner = NULL;
        int fd, reason;

        assert_int_equal(plx_bus_new(&api.service, h->address, "api-service"), 0);
        assert_int_equal(plx_bus_new(&api.client, h->address, "api-client"), 0);
        assert_int_equal(plx_bus_add_method(api.service, NULL, "TakeFd", on_take_fd, &api), 0);

        /* Names: request (with a lease that libplexus renews), look up, wait, watch, release. */
        assert_int_equal(plx_bus_subscribe(api.client, NULL, PLX_TOPIC_NAMES_PREFIX "org.example.Api",
                                           on_signal, &api), 0);
        assert_int_equal(plx_bus_request_name(api.service, "org.example.Api", PLX_NAME_ALLOW_REPLACEMENT),
                         PLX_NAME_PRIMARY_OWNER);
        assert_int_equal(plx_bus_request_name_lease(api.service, "org.example.Api", 0, 60 * 1000 * 1000,
                                                    "api/will", "gone", 4), PLX_NAME_ALREADY_OWNER);
        assert_int_equal(plx_bus_renew_name(api.service, "org.example.Api"), 0);
        assert_int_equal(plx_bus_get_name_owner(api.client, "org.example.Api", &owner), 0);
        assert_string_equal(owner, plx_bus_get_unique_id(api.service));
        free(owner);
        assert_int_equal(plx_bus_wait_for_name(api.client, "org.example.Api", 1000 * 1000, &owner), 0);
        assert_string_equal(owner, plx_bus_get_unique_id(api.service));
        free(owner);
        poll_until(&api, &api.signal_done);
        assert_int_equal(plx_msg_get_name_change(api.signal, &name, &old_owner, &new_owner, &reason), 0);
        assert_string_equal(name, "org.example.Api");
        assert_string_equal(old_owner, "");
        assert_string_equal(new_owner, plx_bus_get_unique_id(api.service));
        assert_int_equal(reason, PLX_NAME_CHANGE_REQUESTED);
        api.signal = plx_msg_unref(api.signal);
        api.signal_done = false;
        assert_int_equal(plx_bus_release_name(api.service, "org.example.Api"), PLX_NAME_RELEASED);
        assert_int_equal(plx_bus_get_name_owner(api.client, "org.example.Api", NULL), -ENXIO);

        /* fds: with a call (sync and async), a reply and a signal. */
        fd = one_pipe("ping");
        assert_int_equal(plx_bus_call_async_with_fds(api.client, NULL, plx_bus_get_unique_id(api.service),
                                                     "TakeFd", NULL, 0, &fd, 1, 5 * 1000 * 1000,
                                                     on_reply, &api), 0);
        close(fd);
        poll_until(&api, &api.reply_done);
        assert_int_equal(plx_msg_get_kind(api.reply), PLX_MSG_REPLY);
        read_fd_of(api.reply, "pong");
        api.reply = plx_msg_unref(api.reply);

        assert_int_equal(plx_bus_subscribe(api.client, NULL, "api/fds", on_fd_signal, &api), 0);
        fd = one_pipe("sig");
        assert_int_equal(plx_bus_publish_with_fds(api.service, "api/fds", NULL, 0, &fd, 1), 0);
        close(fd);
        poll_until(&api, &api.fd_signal_done);
        read_fd_of(api.fd_signal, "sig");
        api.fd_signal = plx_msg_unref(api.fd_signal);
        api.signal = plx_msg_unref(api.signal);     /* the release's change signal, if it came */

        /* Synchronous (nobody answers here while we block): refused by the broker, fd closed there. */
        fd = one_pipe("ping");
        assert_int_equal(plx_bus_call_with_fds(api.client, ":999999", "Nope",
                                               NULL, 0, &fd, 1, 5 * 1000 * 1000, &reply), -EREMOTEIO);
        assert_string_equal(plx_msg_get_error_name(reply), PLX_ERROR_SERVICE_UNKNOWN);
        close(fd);

        plx_bus_free(api.client);
        plx_bus_free(api.service);
}

/* --- monitors ------------------------------------------------------------ */

typedef struct Monitored {
        int kinds[8];
        uint64_t serials[8];
        size_t n;
} Monitored;

static int on_monitor(plx_msg *msg, void *userdata) {
        Monitored *m = userdata;

        assert_true(m->n < sizeof(m->kinds) / sizeof(m->kinds[0]));
        assert_int_equal(plx_msg_get_n_fds(msg), 0);
        m->kinds[m->n] = plx_msg_get_kind(msg);
        m->serials[m->n] = plx_msg_get_kind(msg) == PLX_MSG_CALL ? plx_msg_get_serial(msg)
                                                                  : plx_msg_get_reply_serial(msg);
        m->n++;
        return 0;
}

static int on_big_signal(plx_msg *m, void *userdata) {
        size_t *n = userdata;

        (void)plx_msg_get_payload(m, n);
        return 0;
}

/* Large messages: the shareable buffer, the paths, the reply buffer. */
static void test_api_large(void **state) {
        Harness *h = *state;
        HarnessChild service = HARNESS_CHILD_NULL;
        char id[256];
        plx_bus *bus = NULL;
        plx_buffer *b = NULL;
        size_t size = 1u << 20, got = 0, n;
        _cleanup_msg_ plx_msg *reply = NULL;
        void *dst;

        assert_int_equal(service_fork(&service, h->address, id, sizeof(id)), 0);
        assert_int_equal(plx_bus_new(&bus, h->address, "api-large"), 0);
        assert_true(plx_bus_get_max_message_size(bus) >= size);
        assert_int_equal(plx_bus_set_large_threshold(bus, 4096), 0);
        assert_int_equal(plx_bus_set_large_path(bus, PLX_LARGE_AUTO), 0);
        assert_int_equal(plx_bus_set_large_path(bus, 42), -EINVAL);

        assert_int_equal(plx_buffer_new(&b, size), 0);
        assert_int_equal(plx_buffer_get_size(b), size);
        memset(plx_buffer_get_data(b), 'x', size);
        assert_int_equal(plx_bus_call_buffer(bus, id, "Echo", b, size, PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_int_equal(((const char *)plx_msg_get_payload(reply, &n))[size - 1], 'x');
        assert_int_equal(n, size);
        reply = plx_msg_unref(reply);

        dst = malloc(size);
        assert_non_null(dst);
        assert_int_equal(plx_bus_call_into(bus, id, "Echo", "0123456789", 10, PLX_TIMEOUT_DEFAULT,
                                           dst, size, &reply), 0);
        assert_ptr_equal(plx_msg_get_payload(reply, &n), dst);
        assert_int_equal(n, 10);
        reply = plx_msg_unref(reply);
        free(dst);

        assert_int_equal(plx_bus_subscribe(bus, NULL, "api/big", on_big_signal, &got), 0);
        assert_int_equal(plx_buffer_new(&b, size), 0);
        memset(plx_buffer_get_data(b), 'y', size);
        assert_int_equal(plx_bus_publish_buffer(bus, "api/big", b, size), 0);
        for (int i = 0; i < 200 && got == 0; i++) {
                bool done = false;

                harness_bus_wait(bus, &done, 20);
        }
        assert_int_equal(got, size);

        assert_int_equal(plx_buffer_new(&b, 1), 0);
        assert_null(plx_buffer_free(b));

        assert_int_equal(plx_bus_call(bus, id, "Quit", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(harness_child_wait(&service, harness_timeout_ms(HARNESS_TIMEOUT_MS)), 0);
        harness_child_close(&service);
        plx_bus_free(bus);
}

static void test_api_monitor(void **state) {
        Harness *h = *state;
        _cleanup_msg_ plx_msg *reply = NULL;
        plx_bus *monitor = NULL;
        Monitored seen = {};
        Api api = {};
        uint64_t deadline;

        assert_int_equal(plx_bus_new(&api.service, h->address, "api-service"), 0);
        assert_int_equal(plx_bus_new(&api.client, h->address, "api-client"), 0);
        assert_int_equal(plx_bus_new(&monitor, h->address, "api-monitor"), 0);
        assert_int_equal(plx_bus_add_method(api.service, NULL, "Echo", on_echo, &api), 0);

        /* Checked locally: a bad pattern, no callback. */
        assert_int_equal(plx_bus_become_monitor(monitor, (const char *const[]) { "a/#/b", NULL }, NULL, NULL,
                                                on_monitor, &seen), -EINVAL);
        assert_int_equal(plx_bus_become_monitor(monitor, NULL, NULL, NULL, NULL, NULL), -EINVAL);
        assert_int_equal(plx_bus_become_monitor(monitor, NULL,
                                                (const char *const[]) { plx_bus_get_unique_id(api.service), NULL },
                                                NULL, on_monitor, &seen), 0);
        assert_int_equal(plx_bus_become_monitor(monitor, NULL, NULL, NULL, on_monitor, &seen), -EALREADY);

        /*
         * The client's Echo gets serial 3, as the monitor's Ping below does:
         * the copy of the Echo's REPLY, read while the Ping waits, must not
         * pass for the Ping's answer.
         */
        assert_int_equal(plx_bus_call(api.client, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, NULL), 0);
        assert_int_equal(plx_bus_call_async(api.client, NULL, plx_bus_get_unique_id(api.service), "Echo",
                                            "seen", 4, 5000 * 1000, on_reply, &api), 0);
        poll_until(&api, &api.reply_done);
        assert_int_equal(plx_msg_get_kind(api.reply), PLX_MSG_REPLY);
        assert_int_equal(plx_msg_get_reply_serial(api.reply), 3);
        api.reply = plx_msg_unref(api.reply);

        assert_int_equal(plx_bus_call(monitor, PLX_BROKER, "Ping", NULL, 0, PLX_TIMEOUT_DEFAULT, &reply), 0);
        assert_string_equal(plx_msg_get_sender(reply), PLX_BROKER);
        assert_int_equal(plx_msg_get_reply_serial(reply), 3);

        /* The copies: the CALL (not answered by the monitor) and its REPLY. */
        deadline = harness_now_ms() + (uint64_t)harness_timeout_ms(HARNESS_TIMEOUT_MS);
        while (seen.n < 2) {
                struct pollfd p = { .fd = plx_bus_get_fd(monitor), .events = POLLIN };
                int r;

                while ((r = plx_bus_process(monitor)) > 0)
                        ;
                assert_int_equal(r, 0);
                assert_true(harness_now_ms() < deadline);
                if (seen.n < 2)
                        assert_true(poll(&p, 1, 100) >= 0);
        }
        assert_int_equal(seen.kinds[0], PLX_MSG_CALL);
        assert_int_equal(seen.kinds[1], PLX_MSG_REPLY);
        assert_int_equal(seen.serials[0], 3);
        assert_int_equal(seen.serials[1], 3);
        assert_int_equal(plx_bus_get_n_missed(monitor), 0);

        plx_bus_free(monitor);
        plx_bus_free(api.client);
        plx_bus_free(api.service);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_null_destructors),
                cmocka_unit_test_setup_teardown(test_api, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_sd_event, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_sd_event_default, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_api_names_and_fds, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_api_monitor, harness_setup, harness_teardown),
                cmocka_unit_test_setup_teardown(test_api_large, harness_setup, harness_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
