#pragma once

/*
 * What plexusctl knows about the types on the bus: the answers to
 * Introspect (docs/protocol.md §18), asked once per destination and kept,
 * each with a pool of the descriptors it carried (pb-dynamic.c) on top of
 * the broker's own plexus.proto. Verbs use it to encode JSON into a
 * method's request, and to decode replies and signals into JSON wherever
 * the type is known; where it is not (an untyped or silent client), they
 * fall back to text or a hexdump.
 *
 * Each destination has a pool of its own: two services may ship different
 * files of the same name. Destinations are bounded (DESCRIBE_MAX); past
 * that nothing more is asked and payloads are shown untyped.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <plexus/plexus.h>
#include <protobuf-c/protobuf-c.h>

#include "plexus.pb-c.h"

#define DESCRIBE_MAX 256

/* How long to wait for an Introspect answer when decoding traffic (monitor, subscribe). */
#define DESCRIBE_TIMEOUT_USEC (2ull * 1000 * 1000)

typedef struct Describer Describer;
typedef struct PbdynPool PbdynPool;

/* One destination's answer, with the pool to resolve its type names in. */
typedef struct Description {
        char *destination;
        Plexus__Introspection *introspection;   /* NULL if it did not answer */
        PbdynPool *pool;                        /* plexus.proto plus its descriptor set */
        int error;                              /* why not: negative errno, 0 if answered */
        char *error_name;                       /* the ERROR's name, if one came */
        char *error_message;
} Description;

int describer_new(Describer **ret, plx_bus *bus, uint64_t timeout_usec);
Describer *describer_free(Describer *d);
static inline void describer_freep(Describer **d) {
        if (*d)
                describer_free(*d);
}

const Description *describer_get(Describer *d, const char *destination);
const ProtobufCMessageDescriptor *description_find_type(const Description *desc, const char *full_name);
const Plexus__MethodInfo *description_find_method(const Description *desc, const char *member);
const Plexus__TopicInfo *description_find_topic(const Description *desc, const char *topic);

const ProtobufCMessageDescriptor *describer_request_type(Describer *d, const char *destination, const char *member);
const ProtobufCMessageDescriptor *describer_reply_type(Describer *d, const char *destination, const char *member);
const ProtobufCMessageDescriptor *describer_signal_type(Describer *d, const char *sender, const char *topic);
const ProtobufCMessageDescriptor *describer_declared_type(Describer *d, const char *topic);
const ProtobufCMessageDescriptor *describer_find_type(Describer *d, const char *full_name);

/*
 * JSON in and out, for verbs that cannot include json-c's header (it
 * defines json_bool, as does plexusctl's json.h).
 */
enum {
        DESCRIBE_PRETTY = 1 << 0,       /* over several indented lines */
        DESCRIBE_DEFAULTS = 1 << 1,     /* fields at their default values too */
};

char *describe_payload(const ProtobufCMessageDescriptor *type, const void *data, size_t size, unsigned flags);
int describe_encode(const ProtobufCMessageDescriptor *type, const char *json, uint8_t **ret_data, size_t *ret_size,
                    char **ret_error);
