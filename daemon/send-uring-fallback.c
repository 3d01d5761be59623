/*
 * No io_uring in this build (meson -Dio_uring=disabled, or liburing not
 * found): send_ring_new() says so and the broker sends every round with
 * sendmsg()/sendmmsg(). The other functions are never reached.
 */

#include <errno.h>
#include <stdlib.h>

#include "send-uring.h"

/**
 * send_ring_new() - io_uring is not built in
 *
 * Return: -EOPNOTSUPP.
 */
int send_ring_new(SendRing **ret) {
        return -EOPNOTSUPP;
}

/**
 * send_ring_free() - nothing to free
 *
 * Return: NULL.
 */
SendRing *send_ring_free(SendRing *r) {
        return NULL;
}

/**
 * send_ring_space() - no ring, no space
 */
unsigned send_ring_space(const SendRing *r) {
        return 0;
}

/**
 * send_ring_push() - never called: there is no ring to push to
 */
void send_ring_push(SendRing *r, int fd, const struct msghdr *mh, bool link_next) {
        abort();
}

/**
 * send_ring_submit() - never called: there is no ring
 *
 * Return: -EOPNOTSUPP.
 */
int send_ring_submit(SendRing *r, int32_t *res) {
        return -EOPNOTSUPP;
}
