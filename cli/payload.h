#pragma once

/*
 * Payloads on plexusctl's command line and on its output.
 *
 * In: an argument is the payload itself, "@FILE" names a file to read and
 * "-" means standard input; either is read up to PAYLOAD_MAX bytes, the
 * largest frame a client may send, so that a payload that can never be sent
 * is refused before connecting. Out: text (utf8_is_text()) is printed as it
 * is, anything else as a hexdump in the format of `hexdump -C`.
 */

#include <stddef.h>
#include <stdio.h>

#include "frame.h"

#define PAYLOAD_MAX FRAME_SEND_MAX

int payload_read(const char *arg, void **ret, size_t *ret_size);
void payload_hexdump(FILE *f, const void *p, size_t n);
void payload_print(FILE *f, const void *p, size_t n);
