/*
 * Fuzz target: plexusctl's dynamic protobuf codec (cli/pb-dynamic.c and
 * cli/pb-json.c) on arbitrary FileDescriptorSets, as another process on the
 * bus may send them in reply to Introspect.
 *
 * A set that loads must give descriptors protobuf-c can use: every message
 * type reachable from the services' methods (and their fields, a few levels
 * down) gets JSON encoded into it and a few fixed payloads decoded from it,
 * and what was encoded must decode again. Crashes, leaks and undefined
 * behaviour are what the sanitizers look for.
 */

#include <string.h>

#include "fuzz.h"
#include "util.h"
#include "pb-dynamic.h"
#include "pb-json.h"

static const char *const jsons[] = {
        "{}",
        "{\"a\": 1, \"b\": \"x\", \"c\": [1, 2], \"d\": {\"e\": true}}",
        "{\"value\": \"1970-01-01T00:00:00Z\", \"key\": -1, \"seconds\": \"5\", \"nanos\": 7}",
};

static const uint8_t payloads[][12] = {
        { 0x08, 0x96, 0x01 },                                   /* field 1 varint */
        { 0x0a, 0x03, 'a', 'b', 'c' },                          /* field 1 length-delimited */
        { 0x12, 0x02, 0x08, 0x01, 0x1d, 0, 0, 0x80, 0x3f },     /* nested, fixed32 */
        { 0x09, 1, 2, 3, 4, 5, 6, 7, 8, 0x10, 0x01 },           /* fixed64, varint */
};

static void exercise(const ProtobufCMessageDescriptor *d, unsigned depth) {
        for (size_t i = 0; i < ELEMENTSOF(jsons); i++) {
                uint8_t *bytes = NULL;
                char *error = NULL, *json = NULL;
                size_t n;

                if (pbjson_encode(d, jsons[i], PBJSON_IGNORE_UNKNOWN, &bytes, &n, &error) == 0) {
                        /* what we packed, we unpack: anything else is a broken layout */
                        fuzz_check(pbjson_decode(d, bytes, n, 0, &json, NULL) == 0);
                        free(json);
                        free(bytes);
                } else {
                        fuzz_check(error != NULL);
                        free(error);
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(payloads); i++) {
                char *json = NULL, *error = NULL;

                if (pbjson_decode(d, payloads[i], sizeof(payloads[i]), PBJSON_INCLUDE_DEFAULTS, &json,
                                  &error) == 0)
                        free(json);
                else
                        free(error);
        }
        if (depth >= 3)
                return;
        for (unsigned i = 0; i < d->n_fields && i < 16; i++)
                if (d->fields[i].type == PROTOBUF_C_TYPE_MESSAGE && d->fields[i].descriptor != d)
                        exercise(d->fields[i].descriptor, depth + 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const PbdynService *const *services;
        PbdynPool *pool = NULL;
        size_t n;

        fuzz_check(pbdyn_pool_new(&pool) == 0);
        if (pbdyn_pool_add_set(pool, data, size) < 0) {
                fuzz_check(pbdyn_pool_error(pool)[0] != 0);
                pbdyn_pool_free(pool);
                return 0;
        }
        /* the same set again adds nothing and fails nothing */
        fuzz_check(pbdyn_pool_add_set(pool, data, size) == 0);
        n = pbdyn_pool_get_services(pool, &services);
        for (size_t i = 0; i < n && i < 8; i++)
                for (size_t k = 0; k < services[i]->n_methods && k < 8; k++) {
                        exercise(services[i]->methods[k].input, 0);
                        exercise(services[i]->methods[k].output, 0);
                }
        pbdyn_pool_free(pool);
        return 0;
}
