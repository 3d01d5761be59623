/*
 * Payload input and output (see payload.h).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "payload.h"
#include "utf8.h"
#include "util.h"

/* The first buffer for a stream; it doubles from there. */
#define READ_CHUNK (64u * 1024u)

/* Read all of @fd into a buffer that grows as needed, at most PAYLOAD_MAX bytes. */
static int read_fd(int fd, Payload *ret) {
        _cleanup_(freep) char *buf = NULL;
        size_t n = 0, n_alloc = 0;

        for (;;) {
                ssize_t l;

                if (n == n_alloc) {
                        size_t want = n_alloc ? n_alloc * 2 : READ_CHUNK;
                        char *b;

                        /* One byte more than allowed tells "too large" from "exactly at the limit". */
                        if (n > PAYLOAD_MAX)
                                return -EFBIG;
                        want = (size_t)MIN((uint64_t)want, PAYLOAD_MAX + 1);
                        b = realloc(buf, want);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                        n_alloc = want;
                }
                l = read(fd, buf + n, n_alloc - n);
                if (l < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (l == 0)
                        break;
                n += (size_t)l;
        }
        if (n > PAYLOAD_MAX)
                return -EFBIG;
        *ret = (Payload) { .data = n > 0 ? TAKE_PTR(buf) : NULL, .size = n };
        return 0;
}

/*
 * Map a regular file read-only. The mapping is private: nobody else's
 * writes can reach us through it, though a file truncated meanwhile would
 * still fault (SIGBUS), as it would for any reader of a mapped file.
 * Return: 1 if mapped, 0 if @fd is to be read instead (not a regular file,
 * or one whose size says nothing, as in /proc), or a negative errno.
 */
static int map_fd(int fd, Payload *ret) {
        struct stat st;
        void *p;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size <= 0)
                return 0;
        if ((uint64_t)st.st_size > PAYLOAD_MAX)
                return -EFBIG;
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED)
                return errno == ENODEV ? 0 : -errno;    /* a file system without mmap */
        *ret = (Payload) { .data = p, .size = (size_t)st.st_size, .mapped = true };
        return 1;
}

/**
 * payload_read() - the payload an argument stands for
 * @arg:        the bytes themselves, "@FILE", or "-" for standard input
 * @ret:        receives the payload, possibly of 0 bytes; release it with
 *              payload_release()
 *
 * Return: 0; -EFBIG above PAYLOAD_MAX bytes; -ENOMEM; or the errno of
 * open(), fstat(), mmap() or read() (e.g. -ENOENT for a missing file).
 */
int payload_read(const char *arg, Payload *ret) {
        _cleanup_(closep) int fd = -1;
        size_t n;
        void *p;
        int r;

        if (strcmp(arg, "-") == 0) {
                r = map_fd(STDIN_FILENO, ret);
                return r != 0 ? MIN(r, 0) : read_fd(STDIN_FILENO, ret);
        }
        if (arg[0] == '@') {
                fd = open(arg + 1, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return -errno;
                r = map_fd(fd, ret);
                return r != 0 ? MIN(r, 0) : read_fd(fd, ret);
        }

        n = strlen(arg);
        if (n > PAYLOAD_MAX)
                return -EFBIG;
        p = malloc(n + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p, arg, n + 1);
        *ret = (Payload) { .data = p, .size = n };
        return 0;
}

/**
 * payload_release() - free or unmap what payload_read() gave
 * @p:          the payload; left empty, so a second call does nothing
 */
void payload_release(Payload *p) {
        if (p->mapped)
                munmap(p->data, p->size);
        else
                free(p->data);
        *p = (Payload) PAYLOAD_NULL;
}

/**
 * payload_hexdump() - @n bytes as `hexdump -C` prints them
 * @f:          the stream
 * @p:          the bytes
 * @n:          how many; 0 prints nothing
 *
 * Offset, sixteen bytes in hex (a gap after eight), the same as ASCII with
 * '.' for anything else; then a line with the total length.
 */
void payload_hexdump(FILE *f, const void *p, size_t n) {
        const unsigned char *b = p;

        for (size_t off = 0; off < n; off += 16) {
                fprintf(f, "%08zx ", off);
                for (size_t i = 0; i < 16; i++) {
                        if (i == 8)
                                fputc(' ', f);
                        if (off + i < n)
                                fprintf(f, " %02x", b[off + i]);
                        else
                                fputs("   ", f);
                }
                fputs("  |", f);
                for (size_t i = 0; i < 16 && off + i < n; i++)
                        fputc(b[off + i] >= 0x20 && b[off + i] < 0x7f ? b[off + i] : '.', f);
                fputs("|\n", f);
        }
        if (n > 0)
                fprintf(f, "%08zx\n", n);
}

/**
 * payload_print() - a received payload for a human
 * @f:          the stream
 * @p:          the bytes
 * @n:          how many
 *
 * Text goes out as it is, with a newline added unless it ends with one;
 * anything else as a hexdump. An empty payload prints nothing.
 */
void payload_print(FILE *f, const void *p, size_t n) {
        if (n == 0)
                return;
        if (!utf8_is_text(p, n)) {
                payload_hexdump(f, p, n);
                return;
        }
        fwrite(p, 1, n, f);
        if (((const char *)p)[n - 1] != '\n')
                fputc('\n', f);
}
