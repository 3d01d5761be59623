#pragma once

/*
 * Small helpers shared by the broker and libplexus: cleanup attributes,
 * container_of, and the destructors-return-invalid idiom.
 *
 * A `_cleanup_(f)` variable has f(&var) called when it leaves scope. Helpers
 * that hand ownership on use TAKE_PTR()/TAKE_FD(), which return the value and
 * reset the variable so that the cleanup becomes a no-op.
 */

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((__cleanup__(f)))
#define _unused_ __attribute__((__unused__))
#define _likely_(x) __builtin_expect(!!(x), 1)
#define _unlikely_(x) __builtin_expect(!!(x), 0)
#define _printf_(a, b) __attribute__((__format__(printf, a, b)))
#define _public_ __attribute__((__visibility__("default")))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define container_of(ptr, type, member) \
        ((type *)((char *)(ptr) - offsetof(type, member)))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Defines `funcp(type **)` that calls `func(*p)`; func must accept NULL. */
#define PLX_DEFINE_CLEANUP(type, func)                  \
        static inline void func##p(type *p) {           \
                if (*p)                                 \
                        func(*p);                       \
        }

#define TAKE_PTR(p)                                     \
        ({                                              \
                __typeof__(p) _tp = (p);                \
                (p) = NULL;                             \
                _tp;                                    \
        })

#define TAKE_FD(fd)                                     \
        ({                                              \
                int _tf = (fd);                         \
                (fd) = -1;                              \
                _tf;                                    \
        })

static inline void freep(void *p) {
        free(*(void **)p);
}

/* Closes @fd if valid, keeping errno intact; returns -1 for `fd = plx_close(fd);`. */
static inline int plx_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                close(fd);
                errno = saved;
        }
        return -1;
}

static inline void closep(int *fd) {
        plx_close(*fd);
}

/* Public-API argument check, sd-bus style: returns @r from the caller. */
#define assert_return(expr, r)                          \
        do {                                            \
                if (_unlikely_(!(expr)))                \
                        return (r);                     \
        } while (0)

/* Monotonic clock in microseconds. */
#include <stdint.h>
#include <time.h>
static inline uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
