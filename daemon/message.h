#pragma once

/*
 * A queued frame. Frames are forwarded straight from the broker's receive
 * buffer when the receiver's socket takes them; only a frame that has to wait
 * is copied, once, into a Message shared by every receiver that queues it.
 * The header stored here is the re-stamped header common to all receivers;
 * the per-receiver delivery counter is appended at send time.
 */

#include <stddef.h>
#include <stdint.h>

typedef struct Message {
        unsigned int n_refs;
        uint32_t header_len;
        uint32_t payload_len;
        uint32_t n_fds;
        int *fds;               /* the message's own duplicates, closed with it */
        uint64_t origin_id;     /* who sent it and with which serial, to tell them if it is dropped */
        uint64_t origin_serial;
        uint8_t data[];         /* header, then payload */
} Message;

int message_new(Message **ret, const void *header, size_t header_len,
                const void *stamp, size_t stamp_len,
                const void *payload, size_t payload_len, const int *fds, size_t n_fds);
Message *message_ref(Message *m);
Message *message_unref(Message *m);

static inline const uint8_t *message_header(const Message *m) {
        return m->data;
}

static inline const uint8_t *message_payload(const Message *m) {
        return m->data + m->header_len;
}
