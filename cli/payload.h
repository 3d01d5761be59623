#pragma once

/*
 * Payloads on plexusctl's command line and on its output.
 *
 * In: an argument is the payload itself, "@FILE" names a file to read and
 * "-" means standard input. A regular file is mapped read-only rather than
 * read, so that a payload of hundreds of MiB costs no copy and no memory of
 * ours before libplexus sends it (it lends or copies it once, as large
 * payloads go, docs/protocol.md §17); anything else is read into a buffer
 * that grows as needed. Either way at most PAYLOAD_MAX bytes, the most any
 * broker can be configured to accept (max_message_size), so that a payload
 * that can never be sent is refused before connecting; the bus's actual
 * limit is known only once connected, and libplexus enforces it (-EMSGSIZE).
 * Out: text (utf8_is_text()) is printed as it is, anything else as a
 * hexdump in the format of `hexdump -C`.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PAYLOAD_MAX ((uint64_t)UINT32_MAX)

/* A payload read by payload_read(): a mapping of a file, or malloc()ed. */
typedef struct Payload {
        void *data;                     /* NULL for an empty payload */
        size_t size;
        bool mapped;                    /* data is a read-only mapping of @size bytes */
} Payload;

#define PAYLOAD_NULL { .data = NULL, .size = 0, .mapped = false }

int payload_read(const char *arg, Payload *ret);
void payload_release(Payload *p);
void payload_hexdump(FILE *f, const void *p, size_t n);
void payload_print(FILE *f, const void *p, size_t n);
