/*
 * Bounded FIFO of queued frames (see queue.h).
 */

#include <errno.h>
#include <stdlib.h>

#include "queue.h"

/**
 * queue_init() - set the limits of an empty queue
 */
void queue_init(Queue *q, size_t max_entries, size_t max_bytes, size_t max_fds) {
        *q = (Queue) QUEUE_NULL(*q);
        q->max_entries = max_entries;
        q->max_bytes = max_bytes;
        q->max_fds = max_fds;
}

/**
 * queue_deinit() - drop every queued frame and the ring
 */
void queue_deinit(Queue *q) {
        while (!queue_is_empty(q))
                queue_pop(q);
        free(q->ring);
        q->ring = NULL;
        q->n_alloc = 0;
}

/**
 * queue_room_after() - whether an ordinary push of @size bytes and @n_fds fds
 * would succeed after @n_ahead frames of @bytes_ahead bytes (and no fds)
 * were pushed
 *
 * For frames promised to the queue but not pushed yet: a peer's send batch.
 *
 * Return: 0, QUEUE_E_FULL for the queue's own limits, or QUEUE_E_QUOTA for
 * its user's (the queue's limits are checked first).
 */
int queue_room_after(const Queue *q, size_t n_ahead, size_t bytes_ahead, size_t size, size_t n_fds) {
        size_t n_entries = q->n_entries + n_ahead, n_bytes = q->n_bytes + bytes_ahead;

        if (n_entries >= q->max_entries || size > q->max_bytes ||
            n_bytes > q->max_bytes - size ||
            n_fds > q->max_fds || q->n_fds > q->max_fds - n_fds)
                return QUEUE_E_FULL;
        if (q->user && (user_check(q->user, USER_SLOT_BYTES, bytes_ahead + size) ||
                        user_check(q->user, USER_SLOT_FDS, n_fds)))
                return QUEUE_E_QUOTA;
        return 0;
}

/**
 * queue_room() - whether an ordinary push of @size bytes and @n_fds fds would succeed
 *
 * Return: as queue_room_after().
 */
int queue_room(const Queue *q, size_t size, size_t n_fds) {
        return queue_room_after(q, 0, 0, size, n_fds);
}

static int grow(Queue *q) {
        size_t n = q->n_alloc ? q->n_alloc * 2 : 8;
        QueueEntry *r;

        r = malloc(n * sizeof(*r));
        if (!r)
                return -ENOMEM;

        /* Unwrap the ring into the new array. */
        for (size_t i = 0; i < q->n_entries; i++)
                r[i] = q->ring[(q->head + i) & (q->n_alloc - 1)];
        free(q->ring);
        q->ring = r;
        q->n_alloc = n;
        q->head = 0;
        return 0;
}

/**
 * queue_push() - append a frame
 * @q:          the queue
 * @m:          the message; the queue takes a new reference on success
 * @delivery:   the receiver's delivery counter for this frame
 * @size:       bytes the frame takes on the wire, charged to the queue
 * @force:      ignore the limits (see queue.h for when this is allowed)
 *
 * Return: 0, QUEUE_E_FULL, QUEUE_E_QUOTA, or -ENOMEM.
 */
int queue_push(Queue *q, Message *m, uint64_t delivery, size_t size, bool force) {
        int r;

        if (!force) {
                r = queue_room(q, size, m->n_fds);
                if (r > 0)
                        return r;
        }

        if (q->n_entries == q->n_alloc) {
                r = grow(q);
                if (r < 0)
                        return r;
        }

        q->ring[(q->head + q->n_entries) & (q->n_alloc - 1)] = (QueueEntry) {
                .msg = message_ref(m),
                .delivery = delivery,
                .size = size,
        };
        q->n_entries++;
        q->n_bytes += size;
        q->n_fds += m->n_fds;
        if (q->user) {
                /* Checked above unless forced: cannot fail. */
                (void)user_charge(q->user, USER_SLOT_BYTES, size, true);
                (void)user_charge(q->user, USER_SLOT_FDS, m->n_fds, true);
        }
        return 0;
}

/**
 * queue_peek() - the oldest frame, or NULL
 */
QueueEntry *queue_peek(Queue *q) {
        return q->n_entries ? &q->ring[q->head] : NULL;
}

/**
 * queue_pop() - drop the oldest frame; frees the ring once empty
 */
void queue_pop(Queue *q) {
        QueueEntry *e = &q->ring[q->head];

        q->n_bytes -= e->size;
        q->n_fds -= e->msg->n_fds;
        if (q->user) {
                user_refund(q->user, USER_SLOT_BYTES, e->size);
                user_refund(q->user, USER_SLOT_FDS, e->msg->n_fds);
        }
        message_unref(e->msg);
        q->head = (q->head + 1) & (q->n_alloc - 1);
        if (--q->n_entries == 0) {
                free(q->ring);
                q->ring = NULL;
                q->n_alloc = 0;
                q->head = 0;
        }
}
