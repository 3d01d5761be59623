/*
 * Large messages in libplexus (docs/protocol.md §17).
 *
 * Sending: a payload above the threshold leaves the socket. Either it is
 * copied once into a memfd sealed against writing, shrinking and growing,
 * passed as the frame's first fd (or the application's plx_buffer is sealed
 * and passed as it is), or it is lent: the frame carries its address, each
 * receiver copies it with process_vm_readv(), and the buffer must stay
 * untouched until the broker's TransferDone for the frame's serial says no
 * receiver can read it any more. Lent buffers are tracked in bus->lent; a
 * synchronous call lends the caller's own buffer and waits for TransferDone
 * before returning, other sends lend a private copy freed on TransferDone.
 *
 * Receiving: a memfd is checked (seals, size) and mapped read-only; the
 * mapping is the message's payload. A lent payload is copied, the sender's
 * pidfd (the frame's first fd, put there by the broker) is checked to make
 * sure the pid we read from was still the sender's, and the copy is kept
 * only if the broker confirms (AckTransfer) that the lease had not ended.
 * While we wait for that answer, other frames are parked, undecoded as far
 * as large payloads go, in bus->stash, which read_frame() drains first, so
 * the order of messages is kept.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bus-internal.h"

#define SEALS_NEEDED (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW)

struct plx_buffer {
        int fd;
        void *data;
        size_t size;
};

typedef struct Lent {
        List link;              /* bus->lent */
        uint64_t serial;
        void *owned;            /* a private copy (async sends), freed when done; NULL if borrowed */
} Lent;

static Lent *lent_find(plx_bus *bus, uint64_t serial) {
        Lent *l;

        list_for_each_entry(l, &bus->lent, link)
                if (l->serial == serial)
                        return l;
        return NULL;
}

static void lent_free(Lent *l) {
        list_unlink(&l->link);
        free(l->owned);
        free(l);
}

/**
 * large_connection_lost() - the broker is gone: no receiver can be confirmed any more
 *
 * So every lent buffer is free again.
 */
void large_connection_lost(plx_bus *bus) {
        Lent *l;

        while ((l = list_first_entry(&bus->lent, Lent, link)))
                lent_free(l);
}

static bool destination_refused(plx_bus *bus, const char *destination) {
        for (size_t i = 0; i < ELEMENTSOF(bus->vm_refused); i++)
                if (strcmp(bus->vm_refused[i], destination) == 0)
                        return true;
        return false;
}

/**
 * large_remember_refused() - @destination cannot read our memory: use memfds for it
 *
 * A small ring: services that refuse are few, and forgetting one costs a
 * retry, not a failure.
 */
void large_remember_refused(plx_bus *bus, const char *destination) {
        if (destination_refused(bus, destination))
                return;
        snprintf(bus->vm_refused[bus->n_vm_refused++ % ELEMENTSOF(bus->vm_refused)],
                 sizeof(bus->vm_refused[0]), "%s", destination);
}

static int memfd_new(size_t size) {
        int fd = memfd_create("plexus-payload", MFD_CLOEXEC | MFD_ALLOW_SEALING);

        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t)size) < 0) {
                int r = -errno;

                close(fd);
                return r;
        }
        return fd;
}

static int memfd_seal(int fd) {
        if (fcntl(fd, F_ADD_SEALS, SEALS_NEEDED | F_SEAL_SEAL) < 0)
                return -errno;
        return 0;
}

/* A sealed memfd holding a copy of @payload: one copy, by the kernel. */
static int memfd_from_bytes(const void *payload, size_t size) {
        const uint8_t *p = payload;
        size_t done = 0;
        int fd, r;

        /* Empty, then written: the kernel allocates each page as it copies into it. */
        fd = memfd_new(0);
        if (fd < 0)
                return fd;
        while (done < size) {
                ssize_t n = write(fd, p + done, MIN(size - done, (size_t)1 << 30));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO;
                        close(fd);
                        return r;
                }
                done += (size_t)n;
        }
        r = memfd_seal(fd);
        if (r < 0) {
                close(fd);
                return r;
        }
        return fd;
}

/* Send @h with the sealed @memfd in front of @fds. Borrows @memfd. */
static int send_memfd(plx_bus *bus, Plexus__Header *h, int memfd, size_t size, const int *fds, size_t n_fds) {
        int all[FRAME_FDS_MAX];

        if (n_fds >= FRAME_FDS_MAX)
                return -EINVAL;
        all[0] = memfd;
        if (n_fds)
                memcpy(all + 1, fds, n_fds * sizeof(int));
        h->large_size = size;
        h->large_addr = 0;
        return bus_send_frame(bus, h, NULL, 0, all, n_fds + 1);
}

/* Lend @payload (or a private copy of it, @copy) to the frame's receivers. */
static int send_lent(plx_bus *bus, Plexus__Header *h, const void *payload, size_t size,
                     const int *fds, size_t n_fds, bool copy) {
        _cleanup_(freep) Lent *l = NULL;
        int r;

        if (n_fds >= FRAME_FDS_MAX)
                return -EINVAL;         /* the broker adds the sender's pidfd */
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        if (copy) {
                l->owned = malloc(size);
                if (!l->owned)
                        return -ENOMEM;
                memcpy(l->owned, payload, size);
                payload = l->owned;
        }
        h->large_size = size;
        h->large_addr = (uint64_t)(uintptr_t)payload;
        r = bus_send_frame(bus, h, NULL, 0, fds, n_fds);
        if (r < 0) {
                free(l->owned);
                return r;
        }
        l->serial = h->serial;
        list_append(&bus->lent, &l->link);
        TAKE_PTR(l);
        return 0;
}

/**
 * bus_send_payload() - send @h with @payload, inline or on a large path
 * @bus:        the bus
 * @h:          the header; its serial is assigned here
 * @payload:    borrowed until this returns, or, with @lend, until
 *              large_await_lent() for the serial returns
 * @size:       its length
 * @fds:        the application's fds, borrowed
 * @n_fds:      how many
 * @lend:       the caller can keep @payload untouched until the transfer is
 *              done (synchronous calls), so it may be lent as it is; such a
 *              caller waits for the answer next, so an inline frame goes
 *              out at once instead of through the write queue
 *
 * Return: as bus_send_frame(), plus -EMSGSIZE above the broker's maximum
 * message size.
 */
int bus_send_payload(plx_bus *bus, Plexus__Header *h, const void *payload, size_t size,
                     const int *fds, size_t n_fds, bool lend) {
        int fd, r;

        if (size <= bus->large_threshold || bus->large_path == PLX_LARGE_INLINE)
                return bus_send_frame_now(bus, h, payload, size, fds, n_fds, lend);
        if (size > bus->max_message_size)
                return -EMSGSIZE;
        if (!bus->connected)
                /* Say it as bus_send_frame() would, without building the memfd first. */
                return bus_send_frame(bus, h, NULL, 0, NULL, 0);

        if (bus->large_path == PLX_LARGE_PROCESS_VM ||
            (bus->large_path == PLX_LARGE_AUTO && lend && !(h->destination && destination_refused(bus, h->destination))))
                return send_lent(bus, h, payload, size, fds, n_fds, !lend);

        fd = memfd_from_bytes(payload, size);
        if (fd < 0)
                return fd;
        r = send_memfd(bus, h, fd, size, fds, n_fds);
        close(fd);
        return r;
}

/**
 * bus_send_buffer() - send @h with the first @size bytes of @buf; takes @buf over
 *
 * Return: as bus_send_frame(), -EINVAL if @size exceeds the buffer.
 */
int bus_send_buffer(plx_bus *bus, Plexus__Header *h, plx_buffer *buf, size_t size) {
        _cleanup_(plx_buffer_freep_internal) plx_buffer *b = buf;
        int r;

        if (size > b->size)
                return -EINVAL;
        if (size > bus->max_message_size)
                return -EMSGSIZE;
        /* F_SEAL_WRITE needs every writable mapping gone. */
        if (b->data) {
                munmap(b->data, b->size);
                b->data = NULL;
        }
        r = memfd_seal(b->fd);
        if (r < 0)
                return r;
        return send_memfd(bus, h, b->fd, size, NULL, 0);
}

/**
 * large_await_lent() - wait until nobody can read what frame @serial lent
 *
 * The broker says so with TransferDone; it also stops confirming reads when
 * the lease ends, so waiting past that is never needed: the deadline is the
 * lease from now (the broker started it before it routed anything we got
 * since), plus a grace second. Other messages meanwhile go to the read
 * queue.
 */
void large_await_lent(plx_bus *bus, uint64_t serial, uint64_t size) {
        uint64_t deadline = now_usec() + frame_transfer_lease_usec(bus->transfer_lease_ms, size) + 1000000u;

        while (lent_find(bus, serial) && bus->connected) {
                bool progress = false;

                if (bus_read(bus, &progress) < 0 || now_usec() >= deadline)
                        break;
                if (!progress && bus_wait(bus, deadline) < 0)
                        break;
        }
        /* Gone broker or lease over: no reader can be confirmed any more. */
        Lent *l = lent_find(bus, serial);
        if (l)
                lent_free(l);
}

/**
 * large_lent_pending() - whether frame @serial lent memory that may still be read
 */
bool large_lent_pending(plx_bus *bus, uint64_t serial) {
        return lent_find(bus, serial) != NULL;
}

static void transfer_done(plx_bus *bus, plx_msg *m) {
        Plexus__TransferDone *d;
        Lent *l;

        d = plexus__transfer_done__unpack(NULL, m->payload_len, m->payload);
        if (!d)
                return;
        l = lent_find(bus, d->serial);
        if (l)
                lent_free(l);
        plexus__transfer_done__free_unpacked(d, NULL);
}

/*
 * The large payload of @*m cannot be had. A CALL is answered for the
 * application (its method never runs), a REPLY becomes a local error for
 * its call, a SIGNAL is dropped and counted as missed.
 */
static void large_fail(plx_bus *bus, plx_msg **m, const char *name, const char *text) {
        plx_msg *old = *m, *e;

        *m = NULL;
        switch (old->kind) {
        case PLX_MSG_CALL:
                (void)plx_msg_reply_error(old, name, text);
                break;
        case PLX_MSG_REPLY:
                if (msg_new_local_error(&e, bus, old->reply_serial, name, text) >= 0)
                        *m = e;
                break;
        default:
                bus->n_missed++;
                break;
        }
        plx_msg_unref(old);
}

/* Where a reply's bytes should go: the buffer of a plx_bus_call_into() waiting for it. */
static void *into_target(plx_bus *bus, plx_msg *m, uint64_t size) {
        if (m->kind == PLX_MSG_REPLY && bus->into_buf && m->reply_serial == bus->into_serial &&
            size <= bus->into_size)
                return bus->into_buf;
        return NULL;
}

static int receive_memfd(plx_bus *bus, plx_msg **pm) {
        plx_msg *m = *pm;
        struct stat st;
        void *map, *into;
        int seals;

        seals = m->carrier_fd >= 0 ? fcntl(m->carrier_fd, F_GET_SEALS) : -1;
        if (seals < 0 || (seals & SEALS_NEEDED) != SEALS_NEEDED || fstat(m->carrier_fd, &st) < 0 ||
            (uint64_t)st.st_size < m->large_size) {
                large_fail(bus, pm, PLX_ERROR_INVALID_PAYLOAD, "large payload not in a sealed memfd of its size");
                return 0;
        }
        map = mmap(NULL, m->large_size, PROT_READ, MAP_SHARED, m->carrier_fd, 0);
        if (map == MAP_FAILED) {
                large_fail(bus, pm, PLX_ERROR_LIMITS_EXCEEDED, "cannot map the large payload");
                return 0;
        }
        m->carrier_fd = plx_close(m->carrier_fd);

        into = into_target(bus, m, m->large_size);
        if (into) {
                memcpy(into, map, m->large_size);
                munmap(map, m->large_size);
                m->payload = into;
        } else {
                m->mapping = map;
                m->payload = map;
        }
        m->payload_len = m->large_size;
        return 0;
}

/* Copy a lent payload from the sender's memory. Returns a TransferStatus. */
static int copy_lent(plx_msg *m, void *dst) {
        struct pollfd pfd = { .fd = m->carrier_fd, .events = POLLIN };
        size_t done = 0;

        if (m->carrier_fd < 0)
                return PLEXUS__TRANSFER_STATUS__TRANSFER_FAILED;
        while (done < m->large_size) {
                struct iovec local = { .iov_base = (uint8_t *)dst + done, .iov_len = m->large_size - done };
                struct iovec remote = { .iov_base = (void *)(uintptr_t)(m->large_addr + done),
                                        .iov_len = m->large_size - done };
                ssize_t n = process_vm_readv(m->sender_pid, &local, 1, &remote, 1, 0);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EPERM || errno == EACCES))
                        return PLEXUS__TRANSFER_STATUS__TRANSFER_REFUSED;
                if (n <= 0)
                        return PLEXUS__TRANSFER_STATUS__TRANSFER_FAILED;
                done += (size_t)n;
        }
        /*
         * A pidfd turns readable when its process exits. Still running now
         * means it ran throughout the copy, so the pid we read from was the
         * sender's and not a newcomer's that reused it.
         */
        if (poll(&pfd, 1, 0) != 0)
                return PLEXUS__TRANSFER_STATUS__TRANSFER_FAILED;
        return PLEXUS__TRANSFER_STATUS__TRANSFER_COPIED;
}

static bool is_ack_answer(plx_msg *m, uint64_t serial) {
        return (m->kind == PLX_MSG_REPLY || m->kind == PLX_MSG_ERROR) && m->reply_serial == serial &&
               m->sender && strcmp(m->sender, PLX_BROKER) == 0;
}

/*
 * Ask the broker whether the copy may be kept, parking what arrives
 * meanwhile in the stash. Returns 1 if confirmed, 0 if not, negative errno
 * if the connection broke.
 */
static int confirm(plx_bus *bus, uint64_t transfer_id, uint64_t size, int status) {
        Plexus__TransferAck ack = PLEXUS__TRANSFER_ACK__INIT;
        Plexus__Header h = PLEXUS__HEADER__INIT;
        uint64_t deadline = now_usec() + frame_transfer_lease_usec(bus->transfer_lease_ms, size) + 1000000u;
        uint8_t buf[32];
        int r;

        ack.transfer_id = transfer_id;
        ack.status = status;
        h.kind = PLEXUS__KIND__KIND_CALL;
        h.destination = (char *)PLX_BROKER;
        h.member = (char *)"AckTransfer";
        r = bus_send_frame(bus, &h, buf, plexus__transfer_ack__pack(&ack, buf), NULL, 0);
        if (r < 0)
                return r;

        for (;;) {
                plx_msg *m;

                r = bus_flush_queue(bus);
                if (r < 0)
                        return r;
                r = bus_read_raw(bus, &m);
                if (r < 0)
                        return r;
                if (r > 0) {
                        if (is_ack_answer(m, h.serial)) {
                                bool ok = m->kind == PLX_MSG_REPLY;

                                plx_msg_unref(m);
                                return ok;
                        }
                        if (bus->n_stash >= BUS_RQUEUE_MAX) {
                                /* Cannot park more: give this transfer up rather than grow. */
                                plx_msg_unref(m);
                                return -ENOBUFS;
                        }
                        list_append(&bus->stash, &m->link);
                        bus->n_stash++;
                        continue;
                }
                if (!bus->connected)
                        return -ECONNRESET;
                if (now_usec() >= deadline)
                        return 0;
                r = bus_wait(bus, deadline);
                if (r < 0)
                        return r;
        }
}

/*
 * A buffer for a lent payload. Memory that was never touched costs a page
 * fault per page on first write, which measured at five times the copy
 * itself (docs/performance.md §8): so the last buffer freed is kept for
 * the next payload that fits it.
 */
static void *buffer_get(plx_bus *bus, size_t size, size_t *ret_size) {
        void *b;

        if (bus->spare && bus->spare_size >= size) {
                *ret_size = bus->spare_size;
                bus->spare_size = 0;
                return TAKE_PTR(bus->spare);
        }
        b = malloc(MAX(size, (size_t)1));
        *ret_size = size;
        return b;
}

/**
 * large_buffer_put() - a lent payload's buffer is free again
 * @bus:        the bus it came on, or NULL
 * @buf:        the buffer, adopted
 * @size:       its capacity
 *
 * Kept for the next payload if it is the largest free one, so a process
 * holds at most one spare, of the largest payload it received lately,
 * until the bus is gone.
 */
void large_buffer_put(plx_bus *bus, void *buf, size_t size) {
        if (!bus || size <= bus->spare_size) {
                free(buf);
                return;
        }
        free(bus->spare);
        bus->spare = buf;
        bus->spare_size = size;
}

static int receive_lent(plx_bus *bus, plx_msg **pm) {
        plx_msg *m = *pm;
        void *into = into_target(bus, m, m->large_size), *dst;
        size_t capacity = 0;
        int status, r;

        dst = into ?: buffer_get(bus, (size_t)m->large_size, &capacity);
        if (!dst) {
                status = PLEXUS__TRANSFER_STATUS__TRANSFER_FAILED;
        } else {
                status = copy_lent(m, dst);
        }
        m->carrier_fd = plx_close(m->carrier_fd);

        r = confirm(bus, m->transfer_id, m->large_size, status);
        if (r == 1 && status == PLEXUS__TRANSFER_STATUS__TRANSFER_COPIED) {
                m->payload = dst;
                m->payload_len = m->large_size;
                if (!into) {
                        m->heap_payload = dst;
                        m->heap_size = capacity;
                }
                return 0;
        }
        if (!into)
                large_buffer_put(bus, dst, capacity);
        if (r < 0 && r != -ENOBUFS) {
                large_fail(bus, pm, PLX_ERROR_DISCONNECTED, "connection lost while receiving a large payload");
                return r;
        }
        if (status == PLEXUS__TRANSFER_STATUS__TRANSFER_REFUSED)
                large_fail(bus, pm, PLX_ERROR_TRANSFER_REFUSED,
                           "the receiver may not read the sender's memory (process_vm_readv: EPERM)");
        else
                large_fail(bus, pm, PLX_ERROR_TRANSFER_EXPIRED,
                           "the large payload could not be read in time, or its sender is gone");
        return 0;
}

/**
 * large_process() - finish a message read from the socket
 * @bus:        the bus
 * @pm:         the message; replaced by an error, or set to NULL when it was
 *              consumed here (TransferDone, a failed large CALL or SIGNAL)
 *
 * Return: 0, or negative errno when the connection broke.
 */
int large_process(plx_bus *bus, plx_msg **pm) {
        plx_msg *m = *pm;

        if (m->kind == PLX_MSG_SIGNAL && m->sender && strcmp(m->sender, PLX_BROKER) == 0 &&
            strcmp(m->member, TOPIC_TRANSFER_DONE) == 0) {
                transfer_done(bus, m);
                plx_msg_unref(m);
                *pm = NULL;
                return 0;
        }
        if (!m->large_size) {
                void *into = into_target(bus, m, m->payload_len);

                /* plx_bus_call_into() promises the reply in its buffer, small ones too. */
                if (into && m->payload_len) {
                        memcpy(into, m->payload, m->payload_len);
                        m->payload = into;
                }
                return 0;
        }
        if (m->large_size > SIZE_MAX / 2) {
                large_fail(bus, pm, PLX_ERROR_LIMITS_EXCEEDED, "large payload too large for this process");
                return 0;
        }
        if (m->large_addr)
                return receive_lent(bus, pm);
        return receive_memfd(bus, pm);
}

static void buffer_free(plx_buffer *b) {
        if (b->data)
                munmap(b->data, b->size);
        plx_close(b->fd);
        free(b);
}

void plx_buffer_freep_internal(plx_buffer **b) {
        if (*b)
                buffer_free(*b);
}

_public_ int plx_buffer_new(plx_buffer **ret, size_t size) {
        _cleanup_(plx_buffer_freep_internal) plx_buffer *b = NULL;

        assert_return(ret && size > 0, -EINVAL);

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->size = size;
        b->fd = memfd_new(size);
        if (b->fd < 0) {
                int r = b->fd;

                b->fd = -1;
                return r;
        }
        b->data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, b->fd, 0);
        if (b->data == MAP_FAILED) {
                b->data = NULL;
                return -errno;
        }
        *ret = TAKE_PTR(b);
        return 0;
}

_public_ void *plx_buffer_get_data(plx_buffer *buf) {
        return buf ? buf->data : NULL;
}

_public_ size_t plx_buffer_get_size(plx_buffer *buf) {
        return buf ? buf->size : 0;
}

_public_ plx_buffer *plx_buffer_free(plx_buffer *buf) {
        if (buf)
                buffer_free(buf);
        return NULL;
}

_public_ int plx_bus_set_large_path(plx_bus *bus, int path) {
        assert_return(bus, -EINVAL);
        assert_return(path >= PLX_LARGE_AUTO && path <= PLX_LARGE_PROCESS_VM, -EINVAL);
        bus->large_path = path;
        return 0;
}

_public_ int plx_bus_set_large_threshold(plx_bus *bus, size_t bytes) {
        assert_return(bus, -EINVAL);
        /* Above that, the payload would not fit one frame anyway. */
        bus->large_threshold = MIN(bytes, (size_t)(bus->max_frame_size - FRAME_SEND_HEADER_MAX - FRAME_PREFIX_SIZE));
        return 0;
}

_public_ uint64_t plx_bus_get_max_message_size(plx_bus *bus) {
        return bus ? bus->max_message_size : 0;
}
