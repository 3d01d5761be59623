/*
 * Reference-counted copies of frames that wait in peer queues.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

/**
 * message_new() - copy a frame into a new message
 * @ret:        the message with one reference, written on success
 * @header:     encoded header, borrowed
 * @header_len: its length
 * @payload:    payload, borrowed
 * @payload_len: its length
 *
 * Return: 0 or -ENOMEM.
 */
int message_new(Message **ret, const void *header, size_t header_len,
                const void *payload, size_t payload_len) {
        Message *m;

        m = malloc(sizeof(*m) + header_len + payload_len);
        if (!m)
                return -ENOMEM;

        m->n_refs = 1;
        m->header_len = (uint32_t)header_len;
        m->payload_len = (uint32_t)payload_len;
        memcpy(m->data, header, header_len);
        if (payload_len)
                memcpy(m->data + header_len, payload, payload_len);
        *ret = m;
        return 0;
}

/**
 * message_ref() - take a reference
 * Return: @m
 */
Message *message_ref(Message *m) {
        if (m)
                m->n_refs++;
        return m;
}

/**
 * message_unref() - drop a reference, freeing on the last
 * Return: NULL
 */
Message *message_unref(Message *m) {
        if (m && --m->n_refs == 0)
                free(m);
        return NULL;
}
