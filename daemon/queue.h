#pragma once

/*
 * A peer's outgoing queue: frames that its socket could not take yet, in the
 * order the broker routed them. A ring of (message, delivery counter)
 * entries with limits on bytes and frames.
 *
 * Ordinary pushes fail with QUEUE_E_FULL at a limit. Forced pushes ignore the
 * limits; the broker forces only frames it must not drop (answers to the
 * peer's own calls, errors for its own frames), whose number is bounded by
 * the peer's pending-call limit and by the broker reading no more from a
 * peer whose queue is over its limit. The ring is freed whenever the queue
 * drains, so an idle peer costs no queue memory.
 *
 * A queue with a User charges the bytes and fds of every entry to it (see
 * user.h): an ordinary push also fails, with QUEUE_E_QUOTA, when the
 * user's share or the broker-wide total would be passed. Forced pushes are
 * charged all the same.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "message.h"
#include "user.h"

enum {
        QUEUE_E_FULL = 1,
        QUEUE_E_QUOTA,          /* the receiver's user (or all users) hold too much */
};

typedef struct QueueEntry {
        Message *msg;
        uint64_t delivery;
        size_t size;            /* bytes on the wire */
} QueueEntry;

typedef struct Queue {
        QueueEntry *ring;
        size_t n_alloc;         /* 0 or a power of two */
        size_t head;
        size_t n_entries;
        size_t n_bytes;
        size_t n_fds;           /* passed fds the queued messages hold */
        size_t max_entries;
        size_t max_bytes;
        size_t max_fds;
        User *user;             /* charged for entries, or NULL (set after queue_init()); borrowed */
} Queue;

#define QUEUE_NULL(x) { }

void queue_init(Queue *q, size_t max_entries, size_t max_bytes, size_t max_fds);
void queue_deinit(Queue *q);
int queue_push(Queue *q, Message *m, uint64_t delivery, size_t size, bool force);
QueueEntry *queue_peek(Queue *q);
void queue_pop(Queue *q);
int queue_room(const Queue *q, size_t size, size_t n_fds);
int queue_room_after(const Queue *q, size_t n_ahead, size_t bytes_ahead, size_t size, size_t n_fds);

/* Whether an ordinary push of @size bytes and @n_fds fds would succeed. */
static inline bool queue_has_room(const Queue *q, size_t size, size_t n_fds) {
        return queue_room(q, size, n_fds) == 0;
}

static inline bool queue_is_empty(const Queue *q) {
        return q->n_entries == 0;
}

/* Over its limits (possible only through forced pushes) or at them. */
static inline bool queue_is_full(const Queue *q) {
        return q->n_entries >= q->max_entries || q->n_bytes >= q->max_bytes || q->n_fds >= q->max_fds;
}
