#pragma once

/*
 * The broker's event loop: one epoll instance, edge-triggered, with the
 * readiness of each source cached in userspace (the dbus-broker model).
 *
 * Each fd has a LoopSource embedded in its owner; epoll_data.ptr points at
 * it and the broker finds the owner through container_of() after switching
 * on the source's kind. A source is on the ready list while it has cached
 * events its owner is interested in (events & mask). Owners clear cached
 * events when a syscall says EAGAIN and change their interest with
 * loop_source_select()/loop_source_deselect(); neither costs a syscall.
 */

#include <stdint.h>
#include <sys/epoll.h>

#include "list.h"

typedef enum LoopKind {
        LOOP_KIND_LISTENER,
        LOOP_KIND_PEER,
        LOOP_KIND_SIGNAL,
        LOOP_KIND_TIMER,
        LOOP_KIND_WAKEUP,
} LoopKind;

typedef struct Loop Loop;

typedef struct LoopSource {
        LoopKind kind;          /* first: the broker switches on it */
        int fd;                 /* borrowed from the owner */
        uint32_t mask;          /* events the owner wants dispatched */
        uint32_t events;        /* cached from epoll_wait() */
        Loop *loop;
        List ready_link;
} LoopSource;

#define LOOP_SOURCE_NULL(x) { .fd = -1, .ready_link = LIST_INIT((x).ready_link) }

struct Loop {
        int epoll_fd;
        List ready;
};

#define LOOP_NULL(x) { .epoll_fd = -1, .ready = LIST_INIT((x).ready) }

int loop_init(Loop *loop);
void loop_deinit(Loop *loop);

int loop_source_add(Loop *loop, LoopSource *s, LoopKind kind, int fd, uint32_t mask);
void loop_source_remove(LoopSource *s);
void loop_source_select(LoopSource *s, uint32_t mask);
void loop_source_deselect(LoopSource *s, uint32_t mask);
void loop_source_clear(LoopSource *s, uint32_t events);
void loop_source_presume(LoopSource *s, uint32_t events);

int loop_poll(Loop *loop, List *ret_ready);

static inline int loop_source_is_ready(const LoopSource *s, uint32_t ev) {
        return (s->events & s->mask & ev) != 0;
}
