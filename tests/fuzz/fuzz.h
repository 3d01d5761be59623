#pragma once

/*
 * Shared by the fuzz targets: the libFuzzer entry points and the check
 * macro. Each target defines LLVMFuzzerTestOneInput(); it is linked either
 * with libFuzzer (-Dfuzzing=true) or with replay.c, which runs it over the
 * seed corpus in every `meson test`.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Not assert(): the checks are the point of the target and must survive NDEBUG. */
#define fuzz_check(expr)                                                        \
        do {                                                                    \
                if (!(expr)) {                                                  \
                        fprintf(stderr, "%s:%d: check failed: %s\n",            \
                                __FILE__, __LINE__, #expr);                     \
                        abort();                                                \
                }                                                               \
        } while (0)
