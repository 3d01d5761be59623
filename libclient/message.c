/*
 * plx_msg: a received (or locally made) message. One allocation holds the
 * header fields and the strings. A received payload stays in the receive
 * buffer it was read into, lent to the message, until the bus needs the
 * buffer for another read; a message still alive then gets its own copy
 * (or the buffer itself, for a long payload), see bus_rx_return(). A
 * message references the bus it came from, so it stays readable after
 * plx_bus_free().
 */

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bus-internal.h"

static char *put_string(uint8_t **cursor, const char *s) {
        size_t n = strlen(s) + 1;
        char *dst = (char *)*cursor;

        memcpy(dst, s, n);
        *cursor += n;
        return dst;
}

/**
 * msg_new_from_frame() - build a message from a decoded frame
 * @ret:        the message, one reference, written on success
 * @bus:        the bus it arrived on; a reference is taken
 * @h:          the decoded header, borrowed
 * @payload:    payload bytes, copied unless @rx_slot >= 0
 * @payload_len: their length
 * @rx_slot:    -1, or the receive buffer of @bus that holds @payload: the
 *              message then points into it (bus_rx_return() ends that),
 *              and @payload[@payload_len] must be writable
 *
 * Return: 0 or -ENOMEM.
 */
int msg_new_from_frame(plx_msg **ret, plx_bus *bus, const Plexus__Header *h,
                       const uint8_t *payload, size_t payload_len, int rx_slot) {
        size_t strings = strlen(h->sender) + strlen(h->destination) + strlen(h->member) +
                         strlen(h->error_name) + 4;
        size_t copy = rx_slot >= 0 ? 0 : payload_len + 1;
        uint8_t *cursor;
        plx_msg *m;

        m = malloc(sizeof(*m) + strings + copy);
        if (!m)
                return -ENOMEM;

        *m = (plx_msg) {
                .n_refs = 1,
                .bus = bus_ref(bus),
                .kind = h->kind,
                .flags = h->flags,
                .timeout_ms = h->timeout_ms,
                .serial = h->serial,
                .reply_serial = h->reply_serial,
                .sequence = h->sequence,
                .delivery = h->delivery,
                .sender_uid = (uid_t)h->sender_uid,
                .sender_gid = (gid_t)h->sender_gid,
                .sender_pid = (pid_t)h->sender_pid,
                .large_size = h->large_size,
                .large_addr = h->large_addr,
                .transfer_id = h->transfer_id,
                .carrier_fd = -1,
                .rx_slot = rx_slot,
                .payload_len = payload_len,
                .connection = bus ? bus->reconnect.generation : 0,
        };
        list_init(&m->link);

        cursor = m->data;
        m->sender = put_string(&cursor, h->sender);
        m->destination = put_string(&cursor, h->destination);
        m->member = put_string(&cursor, h->member);
        m->error_name = put_string(&cursor, h->error_name);
        if (rx_slot < 0) {
                if (payload_len)
                        memcpy(cursor, payload, payload_len);
                payload = cursor;
        }
        m->payload = payload;
        /* NUL after the payload: an ERROR's payload is its message text. */
        ((uint8_t *)payload)[payload_len] = 0;
        if (h->kind == PLEXUS__KIND__KIND_ERROR)
                m->error_message = (const char *)payload;

        *ret = m;
        return 0;
}

/**
 * msg_adopt_fds() - give @m the fds that came with it
 * @m:          a new message
 * @fds:        received fds, adopted (closed on failure too)
 * @n_fds:      how many
 */
void msg_adopt_fds(plx_msg *m, int *fds, size_t n_fds) {
        if (!n_fds)
                return;
        m->fds = malloc(n_fds * sizeof(int));
        if (!m->fds) {
                /* Out of memory: the fds cannot be handed out, so they must not leak. */
                for (size_t i = 0; i < n_fds; i++)
                        close(fds[i]);
                return;
        }
        memcpy(m->fds, fds, n_fds * sizeof(int));
        m->n_fds = n_fds;
}

/**
 * msg_new_local_error() - an ERROR made by libplexus itself
 * @ret:        the message, written on success
 * @bus:        the bus (a reference is taken), or NULL
 * @reply_serial: the call it answers
 * @name:       error name
 * @message:    error text
 *
 * The sender of such an error is NULL: it did not come over the bus.
 *
 * Return: 0 or -ENOMEM.
 */
int msg_new_local_error(plx_msg **ret, plx_bus *bus, uint64_t reply_serial,
                        const char *name, const char *message) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        int r;

        h.kind = PLEXUS__KIND__KIND_ERROR;
        h.reply_serial = reply_serial;
        h.error_name = (char *)name;
        if (bus)
                h.destination = bus->unique_id;
        r = msg_new_from_frame(ret, bus, &h, (const uint8_t *)message, strlen(message), -1);
        if (r < 0)
                return r;
        (*ret)->sender = NULL;
        return 0;
}

_public_ plx_msg *plx_msg_ref(plx_msg *msg) {
        if (msg)
                msg->n_refs++;
        return msg;
}

_public_ plx_msg *plx_msg_unref(plx_msg *msg) {
        if (!msg || --msg->n_refs > 0)
                return NULL;
        assert(!list_is_linked(&msg->link));
        if (msg->name_change)
                plexus__name_owner_changed__free_unpacked(msg->name_change, NULL);
        for (size_t i = 0; i < msg->n_fds; i++)
                if (msg->fds[i] >= 0)
                        close(msg->fds[i]);
        free(msg->fds);
        if (msg->mapping)
                munmap(msg->mapping, msg->large_size);
        if (msg->heap_payload)
                large_buffer_put(msg->bus, msg->heap_payload, msg->heap_size);
        plx_close(msg->carrier_fd);
        if (msg->rx_slot >= 0)
                bus_rx_return(msg->bus, msg);
        if (msg->rx_payload_map)
                rx_buffer_release(msg->rx_payload, msg->rx_payload_map);
        else
                free(msg->rx_payload);
        bus_unref(msg->bus);
        free(msg);
        return NULL;
}

_public_ int plx_msg_get_kind(plx_msg *msg) {
        assert_return(msg, -EINVAL);
        return msg->kind;
}

_public_ uint64_t plx_msg_get_serial(plx_msg *msg) {
        return msg ? msg->serial : 0;
}

_public_ uint64_t plx_msg_get_reply_serial(plx_msg *msg) {
        return msg ? msg->reply_serial : 0;
}

_public_ const char *plx_msg_get_sender(plx_msg *msg) {
        return msg ? msg->sender : NULL;
}

_public_ const char *plx_msg_get_destination(plx_msg *msg) {
        return msg ? msg->destination : NULL;
}

_public_ const char *plx_msg_get_member(plx_msg *msg) {
        return msg && msg->kind == PLX_MSG_CALL ? msg->member : NULL;
}

_public_ const char *plx_msg_get_topic(plx_msg *msg) {
        return msg && msg->kind == PLX_MSG_SIGNAL ? msg->member : NULL;
}

_public_ const char *plx_msg_get_error_name(plx_msg *msg) {
        return msg && msg->kind == PLX_MSG_ERROR ? msg->error_name : NULL;
}

_public_ const char *plx_msg_get_error_message(plx_msg *msg) {
        if (!msg || msg->kind != PLX_MSG_ERROR)
                return NULL;
        msg->exposed = true;    /* it may point into the payload */
        return msg->error_message;
}

_public_ const void *plx_msg_get_payload(plx_msg *msg, size_t *ret_size) {
        if (!msg) {
                if (ret_size)
                        *ret_size = 0;
                return NULL;
        }
        if (ret_size)
                *ret_size = msg->payload_len;
        msg->exposed = true;
        return msg->payload;
}

_public_ uint64_t plx_msg_get_sequence(plx_msg *msg) {
        return msg ? msg->sequence : 0;
}

_public_ uint64_t plx_msg_get_delivery(plx_msg *msg) {
        return msg ? msg->delivery : 0;
}

_public_ uid_t plx_msg_get_sender_uid(plx_msg *msg) {
        return msg ? msg->sender_uid : (uid_t)-1;
}

_public_ pid_t plx_msg_get_sender_pid(plx_msg *msg) {
        return msg ? msg->sender_pid : 0;
}

_public_ gid_t plx_msg_get_sender_gid(plx_msg *msg) {
        return msg ? msg->sender_gid : (gid_t)-1;
}

_public_ uint64_t plx_msg_get_large_size(plx_msg *msg) {
        return msg ? msg->large_size : 0;
}

_public_ uint64_t plx_msg_get_large_addr(plx_msg *msg) {
        return msg ? msg->large_addr : 0;
}

_public_ uint64_t plx_msg_get_transfer_id(plx_msg *msg) {
        return msg ? msg->transfer_id : 0;
}

_public_ size_t plx_msg_get_n_fds(plx_msg *msg) {
        return msg ? msg->n_fds : 0;
}

_public_ int plx_msg_get_fd(plx_msg *msg, size_t index) {
        assert_return(msg && index < msg->n_fds, -EINVAL);
        return msg->fds[index] >= 0 ? msg->fds[index] : -EBADF;
}

_public_ int plx_msg_take_fd(plx_msg *msg, size_t index) {
        int fd;

        assert_return(msg && index < msg->n_fds, -EINVAL);
        fd = msg->fds[index];
        if (fd < 0)
                return -EBADF;
        msg->fds[index] = -1;
        return fd;
}

_public_ uint32_t plx_msg_get_timeout_ms(plx_msg *msg) {
        return msg && msg->kind == PLX_MSG_CALL ? msg->timeout_ms : 0;
}

_public_ int plx_msg_get_no_reply(plx_msg *msg) {
        assert_return(msg, -EINVAL);
        return msg->kind == PLX_MSG_CALL && (msg->flags & FRAME_FLAG_NO_REPLY);
}

_public_ plx_bus *plx_msg_get_bus(plx_msg *msg) {
        return msg && msg->bus && msg->bus->fd >= 0 ? msg->bus : NULL;
}

static int reply_check(plx_msg *call) {
        assert_return(call, -EINVAL);
        assert_return(call->kind == PLX_MSG_CALL, -EINVAL);
        if (call->replied)
                return -EALREADY;
        if (!call->bus || call->bus->fd < 0)
                return -ECONNRESET;
        /* Its caller waits on a connection that is gone; the new broker knows nothing of it. */
        if (call->connection != call->bus->reconnect.generation)
                return -ECONNRESET;
        return 0;
}

static int reply_send(plx_msg *call, Plexus__Kind kind, const char *name, const void *payload, size_t size,
                      const int *fds, size_t n_fds) {
        Plexus__Header h = PLEXUS__HEADER__INIT;
        int r;

        call->replied = true;
        if (call->flags & FRAME_FLAG_NO_REPLY)
                return 0;

        h.kind = kind;
        h.reply_serial = call->serial;
        h.destination = (char *)call->sender;
        if (name)
                h.error_name = (char *)name;
        r = bus_send_payload(call->bus, &h, payload, size, fds, n_fds, false);
        if (r < 0)
                call->replied = false;
        return r;
}

_public_ int plx_msg_reply_buffer(plx_msg *call, plx_buffer *buf, size_t size) {
        _cleanup_(plx_buffer_freep_internal) plx_buffer *b = buf;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        int r = reply_check(call);

        if (r < 0)
                return r;
        assert_return(b, -EINVAL);
        call->replied = true;
        if (call->flags & FRAME_FLAG_NO_REPLY)
                return 0;
        h.kind = PLEXUS__KIND__KIND_REPLY;
        h.reply_serial = call->serial;
        h.destination = (char *)call->sender;
        r = bus_send_buffer(call->bus, &h, TAKE_PTR(b), size);
        if (r < 0)
                call->replied = false;
        return r;
}

_public_ int plx_msg_reply_with_fds(plx_msg *call, const void *payload, size_t size,
                                    const int *fds, size_t n_fds) {
        int r = reply_check(call);

        if (r < 0)
                return r;
        assert_return(payload || size == 0, -EINVAL);
        assert_return((fds || n_fds == 0) && n_fds <= FRAME_FDS_MAX, -EINVAL);
        return reply_send(call, PLEXUS__KIND__KIND_REPLY, NULL, payload, size, fds, n_fds);
}

_public_ int plx_msg_reply(plx_msg *call, const void *payload, size_t size) {
        return plx_msg_reply_with_fds(call, payload, size, NULL, 0);
}

_public_ int plx_msg_reply_error(plx_msg *call, const char *name, const char *message) {
        int r = reply_check(call);

        if (r < 0)
                return r;
        assert_return(name && *name && strlen(name) <= FRAME_NAME_MAX, -EINVAL);
        message = message ?: "";
        return reply_send(call, PLEXUS__KIND__KIND_ERROR, name, message, strlen(message), NULL, 0);
}

_public_ int plx_msg_get_name_change(plx_msg *msg, const char **ret_name, const char **ret_old_owner,
                                     const char **ret_new_owner, int *ret_reason) {
        Plexus__NameOwnerChanged *c;

        assert_return(msg && msg->kind == PLX_MSG_SIGNAL, -EINVAL);
        assert_return(msg->sender && strcmp(msg->sender, PLX_BROKER) == 0, -EINVAL);
        assert_return(strncmp(msg->member, PLX_TOPIC_NAMES_PREFIX, strlen(PLX_TOPIC_NAMES_PREFIX)) == 0,
                      -EINVAL);

        if (!msg->name_change) {
                msg->name_change = plexus__name_owner_changed__unpack(NULL, msg->payload_len, msg->payload);
                if (!msg->name_change)
                        return -EBADMSG;
        }
        c = msg->name_change;
        if (ret_name)
                *ret_name = c->name;
        if (ret_old_owner)
                *ret_old_owner = c->old_owner;
        if (ret_new_owner)
                *ret_new_owner = c->new_owner;
        if (ret_reason)
                *ret_reason = c->reason;
        return 0;
}
