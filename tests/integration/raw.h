#pragma once

/*
 * A raw client for tests that must send what libplexus never would: frames
 * built by hand on a SOCK_SEQPACKET socket with common/frame.h and the
 * generated protobuf-c code. A RawFrame holds one received datagram and its
 * decoded header; it is large (a whole FRAME_SIZE_MAX buffer plus an Arena),
 * so tests allocate it with raw_frame_new().
 */

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

typedef struct RawFrame {
        size_t len;                     /* bytes received */
        Plexus__Header *header;         /* decoded into arena; NULL if undecodable */
        const uint8_t *payload;
        size_t payload_len;
        Arena arena;
        uint8_t buf[FRAME_SIZE_MAX];
} RawFrame;

RawFrame *raw_frame_new(void);
RawFrame *raw_frame_free(RawFrame *f);

int raw_connect(const char *address);
int raw_send_bytes(int fd, const void *buf, size_t size);
int raw_send(int fd, const Plexus__Header *h, const void *payload, size_t size);
int raw_send_hello(int fd, uint64_t serial, uint32_t protocol_version);
int raw_recv(int fd, RawFrame *f, int timeout_ms);
int raw_hello(int fd, RawFrame *f, char *ret_id, size_t size);
int raw_wait_eof(int fd, int timeout_ms);
int raw_subscriber(const char *address, const char *pattern, RawFrame *f, char *ret_id, size_t size);
