/*
 * Reference-counted copies of frames that wait in peer queues.
 */

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "message.h"

/**
 * message_new() - copy a frame into a new message
 * @ret:        the message with one reference, written on success
 * @header:     encoded header, borrowed
 * @header_len: its length
 * @stamp:      encoded fields to append to the header (the broker's stamp), or NULL
 * @stamp_len:  their length
 * @payload:    payload, borrowed
 * @payload_len: its length
 * @fds:        fds passed with the frame, borrowed: the message keeps
 *              duplicates, so the frame's own fds can be closed as soon as
 *              routing is done, however many queues share the message
 * @n_fds:      how many
 *
 * Return: 0, -ENOMEM, or -EMFILE/-ENFILE when the broker is out of fds.
 */
int message_new(Message **ret, const void *header, size_t header_len,
                const void *stamp, size_t stamp_len,
                const void *payload, size_t payload_len, const int *fds, size_t n_fds) {
        Message *m;

        m = malloc(sizeof(*m) + header_len + stamp_len + payload_len);
        if (!m)
                return -ENOMEM;

        m->n_refs = 1;
        m->header_len = (uint32_t)(header_len + stamp_len);
        m->payload_len = (uint32_t)payload_len;
        m->n_fds = 0;
        m->fds = NULL;
        m->origin_id = 0;
        m->origin_serial = 0;
        if (n_fds) {
                m->fds = malloc(n_fds * sizeof(int));
                if (!m->fds) {
                        free(m);
                        return -ENOMEM;
                }
                for (; m->n_fds < n_fds; m->n_fds++) {
                        int fd = fcntl(fds[m->n_fds], F_DUPFD_CLOEXEC, 3);

                        if (fd < 0) {
                                int r = -errno;

                                message_unref(m);
                                return r;
                        }
                        m->fds[m->n_fds] = fd;
                }
        }
        memcpy(m->data, header, header_len);
        if (stamp_len)
                memcpy(m->data + header_len, stamp, stamp_len);
        if (payload_len)
                memcpy(m->data + header_len + stamp_len, payload, payload_len);
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
        if (!m || --m->n_refs > 0)
                return NULL;
        for (uint32_t i = 0; i < m->n_fds; i++)
                close(m->fds[i]);
        free(m->fds);
        free(m);
        return NULL;
}
