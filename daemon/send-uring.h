#pragma once

/*
 * Sending a fan-out round through io_uring.
 *
 * A SendRing takes the round's datagrams, one IORING_OP_SENDMSG each, and
 * sends them with one io_uring_enter() that also waits for every
 * completion: when send_ring_submit() returns, the kernel is done with
 * every msghdr, iovec and buffer it was given, as after sendmmsg(). The
 * caller pushes each receiver's frames in order, linked, so that the first
 * one its socket refuses (-EAGAIN) cancels those behind it (-ECANCELED)
 * instead of letting them overtake it.
 *
 * Every request carries MSG_DONTWAIT: without it io_uring would park a
 * send to a full socket on an internal poll and complete it later, holding
 * the buffer and bypassing the receiver's queue limit (docs/performance.md,
 * "io_uring for fan-out").
 *
 * Built from send-uring.c where liburing is found (meson option io_uring),
 * else from send-uring-fallback.c, whose send_ring_new() says -EOPNOTSUPP.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util.h"

/* Requests per submission: the caller flushes bigger rounds in chunks. */
#define SEND_RING_ENTRIES 512u

typedef struct SendRing SendRing;

int send_ring_new(SendRing **ret);
SendRing *send_ring_free(SendRing *r);
PLX_DEFINE_CLEANUP(SendRing *, send_ring_free);
unsigned send_ring_space(const SendRing *r);
void send_ring_push(SendRing *r, int fd, const struct msghdr *mh, bool link_next);
int send_ring_submit(SendRing *r, int32_t *res);
