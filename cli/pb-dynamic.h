#pragma once

/*
 * Protobuf descriptors built at run time. A service describes its interface
 * with a serialized google.protobuf.FileDescriptorSet (protoc
 * --descriptor_set_out --include_imports); a PbdynPool parses such sets and
 * builds real ProtobufCMessageDescriptor and ProtobufCEnumDescriptor objects
 * from them, laid out as protoc-c would lay out the C structs, so that
 * protobuf-c's own pack/unpack/free work on messages of any type the pool
 * knows. Services are kept as name plus methods with their types.
 *
 * The sets come from other processes, so everything is checked before use:
 * sizes, names, field numbers, type references (resolved by full name across
 * all files in the pool). Message types refer to each other by pointer, so a
 * self-recursive type is built without recursing. Unpacking a payload is
 * only safe after pbdyn_check_wire() bounded its nesting and the memory it
 * makes protobuf-c allocate; pb-json.c does that for its callers.
 *
 * Everything returned points into the pool and lives as long as the pool.
 */

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Nesting of messages inside messages that we accept (python's limit too). */
#define PBDYN_DEPTH_MAX 100

typedef struct PbdynPool PbdynPool;

typedef struct PbdynMethod {
        const char *name;                               /* "SetTarget" */
        const char *input_type;                         /* full name, "pkg.Request" */
        const char *output_type;
        const ProtobufCMessageDescriptor *input;
        const ProtobufCMessageDescriptor *output;
        int client_streaming;
        int server_streaming;
} PbdynMethod;

typedef struct PbdynService {
        const char *name;                               /* full name, "pkg.Thermostat" */
        const char *file;                               /* the .proto it was declared in */
        size_t n_methods;
        const PbdynMethod *methods;
} PbdynService;

int pbdyn_pool_new(PbdynPool **ret);
PbdynPool *pbdyn_pool_free(PbdynPool *pool);
static inline void pbdyn_pool_freep(PbdynPool **p) {
        if (*p)
                pbdyn_pool_free(*p);
}

int pbdyn_pool_add_set(PbdynPool *pool, const void *data, size_t size);
const char *pbdyn_pool_error(const PbdynPool *pool);

const ProtobufCMessageDescriptor *pbdyn_pool_find_message(const PbdynPool *pool, const char *name);
const ProtobufCEnumDescriptor *pbdyn_pool_find_enum(const PbdynPool *pool, const char *name);
const PbdynService *pbdyn_pool_find_service(const PbdynPool *pool, const char *name);
size_t pbdyn_pool_get_services(const PbdynPool *pool, const PbdynService *const **ret);

size_t pbdyn_type_size(ProtobufCType type);

int pbdyn_check_wire(const ProtobufCMessageDescriptor *desc, const void *data, size_t size,
                     char *errbuf, size_t errlen);
