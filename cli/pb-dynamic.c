/*
 * Protobuf descriptors built at run time from FileDescriptorSets.
 *
 * A pool owns everything it builds: an arena of allocations (descriptors,
 * names, defaults), the unpacked sets (whose strings the descriptors point
 * at), a sorted index of type and service full names. Sets are added in
 * batches: the files of one set not yet in the pool are built together, in
 * two passes. Pass one walks messages and enums and registers their full
 * names with empty descriptors, so that pass two can resolve every type
 * reference to a pointer, whatever the order of declaration and even when a
 * type refers to itself: nothing recurses along type references, ever. A
 * batch that fails leaves the pool as it was (its arena entries are freed,
 * its names forgotten) and an error string in the pool.
 *
 * The struct layout of a message follows protoc-c: a ProtobufCMessage base,
 * then per field a `has_` flag (proto2 optional and proto3 `optional`
 * scalars and bytes) or `n_` count (repeated) before the value; the members
 * of a oneof share one offset after a uint32 case, as protoc-c puts them in
 * a union (protobuf-c frees the previous member of a oneof through the new
 * member's offset, so they must overlap). protobuf-c unpacks into such a
 * layout with message_init == NULL, which makes it apply default_value
 * itself.
 */

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "descriptor.pb-c.h"
#include "pb-dynamic.h"
#include "util.h"

/* Bounds against hostile sets; generous for anything protoc would write. */
#define PBDYN_SET_SIZE_MAX (64u * 1024 * 1024)
#define PBDYN_TYPES_MAX 65536
#define PBDYN_FIELDS_MAX 8192
#define PBDYN_VALUES_MAX 65536
#define PBDYN_NAME_MAX 1024
#define PBDYN_FIELD_NUMBER_MAX 536870911        /* 2^29 - 1 */
/* What unpacking may allocate, beyond 32 bytes per byte of input. */
#define PBDYN_ALLOC_BUDGET (64ull * 1024 * 1024)

typedef enum TypeKind {
        TYPE_MESSAGE,
        TYPE_ENUM,
        TYPE_SERVICE,
} TypeKind;

typedef struct TypeEntry {
        const char *name;                       /* full name, no leading dot */
        TypeKind kind;
        void *object;
        int32_t enum_first;                     /* an enum's first declared value: proto2's default */
} TypeEntry;

typedef struct TypeIndex {
        TypeEntry *entries;
        size_t n_entries;
        size_t n_alloc;
} TypeIndex;

/* A message of the batch being built: its proto, its descriptor, its file. */
typedef struct MessageWork {
        const Google__Protobuf__DescriptorProto *proto;
        ProtobufCMessageDescriptor *desc;
        bool proto3;
} MessageWork;

struct PbdynPool {
        char error[512];

        void **allocs;                          /* arena: freed with the pool */
        size_t n_allocs;
        size_t n_allocs_max;

        Google__Protobuf__FileDescriptorSet **sets;
        size_t n_sets;

        char **files;                           /* names of the files in the pool */
        size_t n_files;

        TypeIndex types;

        const PbdynService **services;
        size_t n_services;
};

/* State of one pbdyn_pool_add_set() */
typedef struct Batch {
        PbdynPool *pool;
        TypeIndex types;                        /* the batch's own names, sorted before pass two */
        MessageWork *messages;
        size_t n_messages;
        size_t n_messages_max;
        const Google__Protobuf__FileDescriptorProto **files;
        size_t n_files;
        const PbdynService **services;         /* in declaration order */
        size_t n_services;
        size_t n_services_max;
} Batch;

_printf_(2, 3)
static int pool_fail(PbdynPool *pool, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(pool->error, sizeof(pool->error), fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

static void *pool_alloc(PbdynPool *pool, size_t n, size_t size) {
        void *p;

        if (pool->n_allocs == pool->n_allocs_max) {
                size_t m = pool->n_allocs_max ? pool->n_allocs_max * 2 : 64;
                void **a = reallocarray(pool->allocs, m, sizeof(*a));

                if (!a)
                        return NULL;
                pool->allocs = a;
                pool->n_allocs_max = m;
        }
        /* callers rely on zeroed memory, and on a valid pointer for n == 0 */
        p = calloc(n ? n : 1, size ? size : 1);
        if (!p)
                return NULL;
        pool->allocs[pool->n_allocs++] = p;
        return p;
}

_printf_(2, 3)
static char *pool_printf(PbdynPool *pool, const char *fmt, ...) {
        va_list ap;
        char *s;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return NULL;
        s = pool_alloc(pool, (size_t) n + 1, 1);
        if (!s)
                return NULL;
        va_start(ap, fmt);
        vsnprintf(s, (size_t) n + 1, fmt, ap);
        va_end(ap);
        return s;
}

static void pool_rollback(PbdynPool *pool, size_t n_allocs) {
        while (pool->n_allocs > n_allocs)
                free(pool->allocs[--pool->n_allocs]);
}

/**
 * pbdyn_pool_new() - create an empty pool
 * @ret: the new pool, owned by the caller (pbdyn_pool_free())
 *
 * Return: 0, or -ENOMEM.
 */
int pbdyn_pool_new(PbdynPool **ret) {
        PbdynPool *pool;

        pool = calloc(1, sizeof(*pool));
        if (!pool)
                return -ENOMEM;
        *ret = pool;
        return 0;
}

/**
 * pbdyn_pool_free() - free a pool and every descriptor it built
 * @pool: the pool, or NULL
 *
 * Messages unpacked with the pool's descriptors must be freed before.
 *
 * Return: NULL.
 */
PbdynPool *pbdyn_pool_free(PbdynPool *pool) {
        if (!pool)
                return NULL;
        pool_rollback(pool, 0);
        free(pool->allocs);
        for (size_t i = 0; i < pool->n_sets; i++)
                google__protobuf__file_descriptor_set__free_unpacked(pool->sets[i], NULL);
        free(pool->sets);
        free(pool->files);
        free(pool->types.entries);
        free(pool->services);
        free(pool);
        return NULL;
}

/**
 * pbdyn_pool_error() - what the last failed pbdyn_pool_add_set() objected to
 * @pool: the pool
 *
 * Return: a message in English, "" if there was none; valid until the next
 * call on @pool.
 */
const char *pbdyn_pool_error(const PbdynPool *pool) {
        return pool->error;
}

static int type_entry_compare(const void *a, const void *b) {
        const TypeEntry *x = a, *y = b;

        return strcmp(x->name, y->name);
}

static const TypeEntry *type_index_find(const TypeIndex *idx, const char *name) {
        TypeEntry key = { .name = name };

        if (idx->n_entries == 0)
                return NULL;
        return bsearch(&key, idx->entries, idx->n_entries, sizeof(TypeEntry), type_entry_compare);
}

static int type_index_add(TypeIndex *idx, const char *name, TypeKind kind, void *object) {
        if (idx->n_entries == idx->n_alloc) {
                size_t m = idx->n_alloc ? idx->n_alloc * 2 : 32;
                TypeEntry *e = reallocarray(idx->entries, m, sizeof(*e));

                if (!e)
                        return -ENOMEM;
                idx->entries = e;
                idx->n_alloc = m;
        }
        idx->entries[idx->n_entries++] = (TypeEntry) { .name = name, .kind = kind, .object = object };
        return 0;
}

static const TypeEntry *pool_lookup(const PbdynPool *pool, const Batch *batch, const char *name) {
        const TypeEntry *e;

        if (name && name[0] == '.')
                name++;
        if (!name)
                return NULL;
        e = type_index_find(&pool->types, name);
        if (!e && batch)
                e = type_index_find(&batch->types, name);
        return e;
}

/**
 * pbdyn_pool_find_message() - look up a message type by full name
 * @pool: the pool
 * @name: "pkg.Outer.Inner"; a leading dot is accepted
 *
 * Return: the descriptor, owned by @pool; NULL if @pool has no such message.
 */
const ProtobufCMessageDescriptor *pbdyn_pool_find_message(const PbdynPool *pool, const char *name) {
        const TypeEntry *e = pool_lookup(pool, NULL, name);

        return e && e->kind == TYPE_MESSAGE ? e->object : NULL;
}

/**
 * pbdyn_pool_find_enum() - look up an enum type by full name
 * @pool: the pool
 * @name: "pkg.Outer.Kind"; a leading dot is accepted
 *
 * Return: the descriptor, owned by @pool; NULL if @pool has no such enum.
 */
const ProtobufCEnumDescriptor *pbdyn_pool_find_enum(const PbdynPool *pool, const char *name) {
        const TypeEntry *e = pool_lookup(pool, NULL, name);

        return e && e->kind == TYPE_ENUM ? e->object : NULL;
}

/**
 * pbdyn_pool_find_service() - look up a service by full name
 * @pool: the pool
 * @name: "pkg.Thermostat"; a leading dot is accepted
 *
 * Return: the service, owned by @pool; NULL if @pool has no such service.
 */
const PbdynService *pbdyn_pool_find_service(const PbdynPool *pool, const char *name) {
        const TypeEntry *e = pool_lookup(pool, NULL, name);

        return e && e->kind == TYPE_SERVICE ? e->object : NULL;
}

/**
 * pbdyn_pool_get_services() - every service in the pool
 * @pool: the pool
 * @ret: set to an array of the services, in the order their files were added
 *
 * Return: the number of services; the array is valid until the next
 * pbdyn_pool_add_set().
 */
size_t pbdyn_pool_get_services(const PbdynPool *pool, const PbdynService *const **ret) {
        *ret = pool->services;
        return pool->n_services;
}

static bool name_is_identifier(const char *s) {
        size_t n = 0;

        if (!s || !*s)
                return false;
        if (s[0] >= '0' && s[0] <= '9')
                return false;
        for (; *s; s++, n++) {
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        }
        return n <= 255;
}

static bool name_is_dotted(const char *s) {
        /* a package: identifiers joined by dots, or "" */
        char buf[PBDYN_NAME_MAX + 1];
        char *save = NULL, *t;

        if (!s || !*s)
                return true;
        if (strlen(s) > PBDYN_NAME_MAX || s[0] == '.' || s[strlen(s) - 1] == '.' || strstr(s, ".."))
                return false;
        strcpy(buf, s);
        for (t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save))
                if (!name_is_identifier(t))
                        return false;
        return true;
}

static char *full_name(Batch *b, const char *scope, const char *name) {
        char *s;

        if (scope && *scope)
                s = pool_printf(b->pool, "%s.%s", scope, name);
        else
                s = pool_printf(b->pool, "%s", name);
        if (s && strlen(s) > PBDYN_NAME_MAX)
                return NULL;
        return s;
}

static int enum_value_compare(const void *a, const void *b) {
        const ProtobufCEnumValue *x = a, *y = b;

        return (x->value > y->value) - (x->value < y->value);
}

typedef struct EnumOrder {
        int32_t value;
        size_t index;
} EnumOrder;

static int enum_order_compare(const void *a, const void *b) {
        const EnumOrder *x = a, *y = b;

        if (x->value != y->value)
                return (x->value > y->value) - (x->value < y->value);
        return (x->index > y->index) - (x->index < y->index);
}

static int enum_index_compare(const void *a, const void *b) {
        const ProtobufCEnumValueIndex *x = a, *y = b;

        return strcmp(x->name, y->name);
}

/* Splits sorted numbers into runs of consecutive ones, as protobuf-c wants them. */
static ProtobufCIntRange *int_ranges(PbdynPool *pool, const int *numbers, size_t n, unsigned *ret_n) {
        ProtobufCIntRange *r;
        unsigned k = 0;

        r = pool_alloc(pool, n + 1, sizeof(*r));
        if (!r)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (i == 0 || numbers[i] != numbers[i - 1] + 1)
                        r[k++] = (ProtobufCIntRange) { .start_value = numbers[i], .orig_index = (unsigned) i };
        }
        /* int_range_lookup() reads one past the last range for its size */
        r[k] = (ProtobufCIntRange) { .start_value = 0, .orig_index = (unsigned) n };
        *ret_n = k;
        return r;
}

static int build_enum(Batch *b, const Google__Protobuf__EnumDescriptorProto *ep, const char *scope,
                      const char *package) {
        PbdynPool *pool = b->pool;
        ProtobufCEnumDescriptor *d;
        ProtobufCEnumValue *values;
        ProtobufCEnumValueIndex *by_name;
        EnumOrder *order;
        int *numbers;
        size_t n = 0;
        char *name;
        int r;

        if (!name_is_identifier(ep->name))
                return pool_fail(pool, "enum in \"%s\": invalid name", scope);
        name = full_name(b, scope, ep->name);
        if (!name)
                return pool_fail(pool, "enum \"%s\": name too long", ep->name);
        if (ep->n_value > PBDYN_VALUES_MAX)
                return pool_fail(pool, "enum \"%s\": too many values", name);

        d = pool_alloc(pool, 1, sizeof(*d));
        values = pool_alloc(pool, ep->n_value, sizeof(*values));
        by_name = pool_alloc(pool, ep->n_value, sizeof(*by_name));
        numbers = pool_alloc(pool, ep->n_value, sizeof(*numbers));
        order = pool_alloc(pool, ep->n_value, sizeof(*order));
        if (!d || !values || !by_name || !numbers || !order)
                return -ENOMEM;

        for (size_t i = 0; i < ep->n_value; i++) {
                const Google__Protobuf__EnumValueDescriptorProto *v = ep->value[i];

                if (!name_is_identifier(v->name))
                        return pool_fail(pool, "enum \"%s\": value %zu has an invalid name", name, i);
                order[i] = (EnumOrder) { .value = v->number, .index = i };
        }
        /* Sorted by number; of aliases, the first declared name stays. */
        qsort(order, ep->n_value, sizeof(*order), enum_order_compare);
        for (size_t i = 0; i < ep->n_value; i++) {
                const Google__Protobuf__EnumValueDescriptorProto *v = ep->value[order[i].index];

                if (n > 0 && values[n - 1].value == v->number)
                        continue;
                values[n++] = (ProtobufCEnumValue) { .name = v->name, .c_name = v->name, .value = v->number };
        }

        for (size_t i = 0; i < n; i++)
                numbers[i] = values[i].value;

        /* Every name, aliases included, points at the value of its number. */
        for (size_t i = 0; i < ep->n_value; i++) {
                ProtobufCEnumValue key = { .value = ep->value[i]->number };
                ProtobufCEnumValue *v = bsearch(&key, values, n, sizeof(*values), enum_value_compare);

                assert(v);
                by_name[i] = (ProtobufCEnumValueIndex) { .name = ep->value[i]->name,
                                                          .index = (unsigned) (v - values) };
        }
        qsort(by_name, ep->n_value, sizeof(*by_name), enum_index_compare);
        for (size_t i = 1; i < ep->n_value; i++)
                if (strcmp(by_name[i - 1].name, by_name[i].name) == 0)
                        return pool_fail(pool, "enum \"%s\": value \"%s\" declared twice", name, by_name[i].name);

        *d = (ProtobufCEnumDescriptor) {
                .magic = PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC,
                .name = name,
                .short_name = ep->name,
                .c_name = name,
                .package_name = package,
                .n_values = (unsigned) n,
                .values = values,
                .n_value_names = (unsigned) ep->n_value,
                .values_by_name = by_name,
        };
        d->value_ranges = int_ranges(pool, numbers, n, &d->n_value_ranges);
        if (!d->value_ranges)
                return -ENOMEM;

        r = type_index_add(&b->types, name, TYPE_ENUM, d);
        if (r < 0)
                return r;
        b->types.entries[b->types.n_entries - 1].enum_first = ep->n_value > 0 ? ep->value[0]->number : 0;
        if (b->types.n_entries > PBDYN_TYPES_MAX)
                return pool_fail(pool, "too many types");
        return 0;
}

static int collect_message(Batch *b, const Google__Protobuf__DescriptorProto *mp, const char *scope,
                           const char *package, bool proto3, unsigned depth) {
        PbdynPool *pool = b->pool;
        ProtobufCMessageDescriptor *d;
        char *name;
        int r;

        if (depth > PBDYN_DEPTH_MAX)
                return pool_fail(pool, "messages nested too deeply in \"%s\"", scope);
        if (!name_is_identifier(mp->name))
                return pool_fail(pool, "message in \"%s\": invalid name", scope);
        name = full_name(b, scope, mp->name);
        if (!name)
                return pool_fail(pool, "message \"%s\": name too long", mp->name);

        d = pool_alloc(pool, 1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        *d = (ProtobufCMessageDescriptor) {
                .magic = PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                .name = name,
                .short_name = mp->name,
                .c_name = name,
                .package_name = package,
        };
        r = type_index_add(&b->types, name, TYPE_MESSAGE, d);
        if (r < 0)
                return r;
        if (b->types.n_entries > PBDYN_TYPES_MAX)
                return pool_fail(pool, "too many types");

        if (b->n_messages == b->n_messages_max) {
                size_t m = b->n_messages_max ? b->n_messages_max * 2 : 32;
                MessageWork *w = reallocarray(b->messages, m, sizeof(*w));

                if (!w)
                        return -ENOMEM;
                b->messages = w;
                b->n_messages_max = m;
        }
        b->messages[b->n_messages++] = (MessageWork) { .proto = mp, .desc = d, .proto3 = proto3 };

        for (size_t i = 0; i < mp->n_enum_type; i++) {
                r = build_enum(b, mp->enum_type[i], name, package);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < mp->n_nested_type; i++) {
                r = collect_message(b, mp->nested_type[i], name, package, proto3, depth + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

static size_t align_to(size_t off, size_t a) {
        return (off + a - 1) & ~(a - 1);
}

/**
 * pbdyn_type_size() - size of one value of a field type in a message struct
 * @type: the type
 *
 * Also the size of one element of a repeated field's array; a value is
 * aligned to its size, at most 8.
 *
 * Return: the size in bytes.
 */
size_t pbdyn_type_size(ProtobufCType type) {
        switch (type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
        case PROTOBUF_C_TYPE_FLOAT:
        case PROTOBUF_C_TYPE_ENUM:
                return 4;
        case PROTOBUF_C_TYPE_BOOL:
                return sizeof(protobuf_c_boolean);
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_DOUBLE:
                return 8;
        case PROTOBUF_C_TYPE_STRING:
                return sizeof(char *);
        case PROTOBUF_C_TYPE_BYTES:
                return sizeof(ProtobufCBinaryData);
        case PROTOBUF_C_TYPE_MESSAGE:
                return sizeof(ProtobufCMessage *);
        }
        return 8;
}

static size_t value_align(ProtobufCType type) {
        size_t s = pbdyn_type_size(type);

        return s >= 8 ? 8 : s;
}

static bool type_is_packable(ProtobufCType type) {
        return type != PROTOBUF_C_TYPE_STRING && type != PROTOBUF_C_TYPE_BYTES &&
               type != PROTOBUF_C_TYPE_MESSAGE;
}

static int map_type(Google__Protobuf__FieldDescriptorProto__Type t, ProtobufCType *ret) {
        static const int map[] = {
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_DOUBLE] = PROTOBUF_C_TYPE_DOUBLE,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FLOAT] = PROTOBUF_C_TYPE_FLOAT,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT64] = PROTOBUF_C_TYPE_INT64,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT64] = PROTOBUF_C_TYPE_UINT64,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32] = PROTOBUF_C_TYPE_INT32,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED64] = PROTOBUF_C_TYPE_FIXED64,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED32] = PROTOBUF_C_TYPE_FIXED32,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BOOL] = PROTOBUF_C_TYPE_BOOL,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING] = PROTOBUF_C_TYPE_STRING,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP] = -1,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE] = PROTOBUF_C_TYPE_MESSAGE,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BYTES] = PROTOBUF_C_TYPE_BYTES,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT32] = PROTOBUF_C_TYPE_UINT32,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_ENUM] = PROTOBUF_C_TYPE_ENUM,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SFIXED32] = PROTOBUF_C_TYPE_SFIXED32,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SFIXED64] = PROTOBUF_C_TYPE_SFIXED64,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT32] = PROTOBUF_C_TYPE_SINT32,
                [GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT64] = PROTOBUF_C_TYPE_SINT64,
        };

        if ((unsigned) t == 0 || (unsigned) t >= ELEMENTSOF(map) || map[t] < 0)
                return -EINVAL;
        *ret = (ProtobufCType) map[t];
        return 0;
}

static int parse_int_default(const char *s, long long min, long long max, long long *ret) {
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 0);
        if (errno != 0 || end == s || *end || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_bytes_default(PbdynPool *pool, const char *s, ProtobufCBinaryData *ret) {
        size_t n = strlen(s), k = 0;
        uint8_t *d = pool_alloc(pool, n + 1, 1);

        if (!d)
                return -ENOMEM;
        /* protoc writes bytes defaults C-escaped: \n, \\, \ooo, \xHH, ... */
        for (size_t i = 0; i < n; i++) {
                unsigned v = 0, m = 0;

                if (s[i] != '\\') {
                        d[k++] = (uint8_t) s[i];
                        continue;
                }
                if (++i >= n)
                        return -EINVAL;
                switch (s[i]) {
                case 'n': d[k++] = '\n'; break;
                case 'r': d[k++] = '\r'; break;
                case 't': d[k++] = '\t'; break;
                case 'a': d[k++] = '\a'; break;
                case 'b': d[k++] = '\b'; break;
                case 'f': d[k++] = '\f'; break;
                case 'v': d[k++] = '\v'; break;
                case '\\': case '\'': case '"': case '?': d[k++] = (uint8_t) s[i]; break;
                case 'x':
                        while (m < 2 && i + 1 < n && strchr("0123456789abcdefABCDEF", s[i + 1]) && s[i + 1]) {
                                char c = s[++i];

                                v = v * 16 + (unsigned) (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
                                m++;
                        }
                        if (m == 0)
                                return -EINVAL;
                        d[k++] = (uint8_t) v;
                        break;
                default:
                        if (s[i] < '0' || s[i] > '7')
                                return -EINVAL;
                        i--;
                        while (m < 3 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7') {
                                v = v * 8 + (unsigned) (s[++i] - '0');
                                m++;
                        }
                        if (v > 255)
                                return -EINVAL;
                        d[k++] = (uint8_t) v;
                }
        }
        *ret = (ProtobufCBinaryData) { .len = k, .data = d };
        return 0;
}

/* A proto2 default, as protoc writes it, into storage owned by the pool. */
static int build_default(Batch *b, const char *msg, ProtobufCFieldDescriptor *f,
                         const Google__Protobuf__FieldDescriptorProto *fp, const void **ret) {
        PbdynPool *pool = b->pool;
        const char *s = fp->default_value;
        long long v = 0;
        void *p;
        int r = 0;

        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
                r = parse_int_default(s, INT32_MIN, INT32_MAX, &v);
                if (r >= 0 && (p = pool_alloc(pool, 1, sizeof(int32_t))))
                        *(int32_t *) p = (int32_t) v;
                break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                r = parse_int_default(s, 0, UINT32_MAX, &v);
                if (r >= 0 && (p = pool_alloc(pool, 1, sizeof(uint32_t))))
                        *(uint32_t *) p = (uint32_t) v;
                break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
                r = parse_int_default(s, INT64_MIN, INT64_MAX, &v);
                if (r >= 0 && (p = pool_alloc(pool, 1, sizeof(int64_t))))
                        *(int64_t *) p = (int64_t) v;
                break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64: {
                char *end;
                unsigned long long u;

                errno = 0;
                u = strtoull(s, &end, 0);
                if (errno || end == s || *end || s[0] == '-')
                        r = -EINVAL;
                else if ((p = pool_alloc(pool, 1, sizeof(uint64_t))))
                        *(uint64_t *) p = u;
                break;
        }
        case PROTOBUF_C_TYPE_FLOAT:
        case PROTOBUF_C_TYPE_DOUBLE: {
                double d;
                char *end;

                if (strcmp(s, "inf") == 0)
                        d = INFINITY;
                else if (strcmp(s, "-inf") == 0)
                        d = -INFINITY;
                else if (strcmp(s, "nan") == 0)
                        d = NAN;
                else {
                        errno = 0;
                        d = strtod(s, &end);
                        if (end == s || *end)
                                r = -EINVAL;
                }
                if (r < 0)
                        break;
                if (f->type == PROTOBUF_C_TYPE_FLOAT) {
                        if ((p = pool_alloc(pool, 1, sizeof(float))))
                                *(float *) p = (float) d;
                } else if ((p = pool_alloc(pool, 1, sizeof(double))))
                        *(double *) p = d;
                break;
        }
        case PROTOBUF_C_TYPE_BOOL:
                if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0)
                        r = -EINVAL;
                else if ((p = pool_alloc(pool, 1, sizeof(protobuf_c_boolean))))
                        *(protobuf_c_boolean *) p = strcmp(s, "true") == 0;
                break;
        case PROTOBUF_C_TYPE_ENUM: {
                const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, s);

                if (!ev)
                        r = -EINVAL;
                else if ((p = pool_alloc(pool, 1, sizeof(int32_t))))
                        *(int32_t *) p = ev->value;
                break;
        }
        case PROTOBUF_C_TYPE_STRING:
                p = pool_printf(pool, "%s", s);
                break;
        case PROTOBUF_C_TYPE_BYTES:
                p = pool_alloc(pool, 1, sizeof(ProtobufCBinaryData));
                if (p)
                        r = parse_bytes_default(pool, s, p);
                break;
        case PROTOBUF_C_TYPE_MESSAGE:
        default:
                r = -EINVAL;
                break;
        }
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return pool_fail(pool, "field \"%s.%s\": invalid default value \"%s\"", msg, f->name, s);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static int field_number_compare(const void *a, const void *b) {
        const ProtobufCFieldDescriptor *x = a, *y = b;

        return (x->id > y->id) - (x->id < y->id);
}

static int field_name_compare_r(const void *a, const void *b, void *userdata) {
        const ProtobufCFieldDescriptor *fields = userdata;

        return strcmp(fields[*(const unsigned *) a].name, fields[*(const unsigned *) b].name);
}

static int build_fields(Batch *b, MessageWork *w) {
        PbdynPool *pool = b->pool;
        const Google__Protobuf__DescriptorProto *mp = w->proto;
        ProtobufCMessageDescriptor *d = w->desc;
        ProtobufCFieldDescriptor *fields;
        unsigned *by_name;
        int *numbers;
        size_t off = sizeof(ProtobufCMessage);
        size_t n = mp->n_field;
        int r;

        if (n > PBDYN_FIELDS_MAX)
                return pool_fail(pool, "message \"%s\": too many fields", d->name);
        if (mp->n_oneof_decl > PBDYN_FIELDS_MAX)
                return pool_fail(pool, "message \"%s\": too many oneofs", d->name);

        fields = pool_alloc(pool, n, sizeof(*fields));
        by_name = pool_alloc(pool, n, sizeof(*by_name));
        numbers = pool_alloc(pool, n, sizeof(*numbers));
        if (!fields || !by_name || !numbers)
                return -ENOMEM;

        /* Pass one: types, labels, flags, and the offsets of fields outside oneofs. */
        for (size_t i = 0; i < n; i++) {
                const Google__Protobuf__FieldDescriptorProto *fp = mp->field[i];
                ProtobufCFieldDescriptor *f = &fields[i];
                bool in_oneof = fp->has_oneof_index && !(fp->has_proto3_optional && fp->proto3_optional);
                const TypeEntry *e = NULL;
                bool repeated, has_flag = false;

                if (!name_is_identifier(fp->name))
                        return pool_fail(pool, "message \"%s\": field %zu has an invalid name", d->name, i);
                if (!fp->has_number || fp->number < 1 || fp->number > PBDYN_FIELD_NUMBER_MAX)
                        return pool_fail(pool, "field \"%s.%s\": invalid field number", d->name, fp->name);
                if (!fp->has_type || map_type(fp->type, &f->type) < 0)
                        return pool_fail(pool, "field \"%s.%s\": unsupported type (groups are not supported)",
                                         d->name, fp->name);
                if (fp->extendee)
                        return pool_fail(pool, "field \"%s.%s\": extensions are not supported", d->name, fp->name);
                f->name = fp->name;
                f->id = (uint32_t) fp->number;
                if (fp->options && fp->options->has_deprecated && fp->options->deprecated)
                        f->flags |= PROTOBUF_C_FIELD_FLAG_DEPRECATED;
                repeated = fp->has_label && fp->label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED;

                if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_ENUM) {
                        e = pool_lookup(pool, b, fp->type_name);
                        if (!fp->type_name || fp->type_name[0] != '.')
                                return pool_fail(pool, "field \"%s.%s\": type name \"%s\" is not fully qualified",
                                                 d->name, fp->name, fp->type_name ?: "");
                        if (!e || e->kind != (f->type == PROTOBUF_C_TYPE_MESSAGE ? TYPE_MESSAGE : TYPE_ENUM))
                                return pool_fail(pool, "field \"%s.%s\": unknown %s type \"%s\"", d->name, fp->name,
                                                 f->type == PROTOBUF_C_TYPE_MESSAGE ? "message" : "enum",
                                                 fp->type_name);
                        f->descriptor = e->object;
                }

                if (in_oneof) {
                        if (repeated || (fp->has_label &&
                                         fp->label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED))
                                return pool_fail(pool, "field \"%s.%s\": a oneof member must be singular",
                                                 d->name, fp->name);
                        if (fp->oneof_index < 0 || (size_t) fp->oneof_index >= mp->n_oneof_decl)
                                return pool_fail(pool, "field \"%s.%s\": invalid oneof index", d->name, fp->name);
                        f->label = PROTOBUF_C_LABEL_OPTIONAL;
                        f->flags |= PROTOBUF_C_FIELD_FLAG_ONEOF;
                        continue;       /* laid out with its oneof below */
                }

                if (repeated) {
                        f->label = PROTOBUF_C_LABEL_REPEATED;
                        if (type_is_packable(f->type) &&
                            (fp->options && fp->options->has_packed ? fp->options->packed : w->proto3))
                                f->flags |= PROTOBUF_C_FIELD_FLAG_PACKED;
                        off = align_to(off, sizeof(size_t));
                        f->quantifier_offset = (unsigned) off;
                        off += sizeof(size_t);
                        off = align_to(off, sizeof(void *));
                        f->offset = (unsigned) off;
                        off += sizeof(void *);
                        continue;
                }

                if (fp->has_label && fp->label == GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED) {
                        f->label = PROTOBUF_C_LABEL_REQUIRED;
                } else if (w->proto3 && !(fp->has_proto3_optional && fp->proto3_optional)) {
                        f->label = PROTOBUF_C_LABEL_NONE;
                } else {
                        f->label = PROTOBUF_C_LABEL_OPTIONAL;
                        /* strings and messages are present when non-NULL, as in protoc-c */
                        has_flag = f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE;
                }
                if (has_flag) {
                        off = align_to(off, sizeof(protobuf_c_boolean));
                        f->quantifier_offset = (unsigned) off;
                        off += sizeof(protobuf_c_boolean);
                }
                off = align_to(off, value_align(f->type));
                f->offset = (unsigned) off;
                off += pbdyn_type_size(f->type);

                if (fp->default_value) {
                        if (w->proto3)
                                return pool_fail(pool, "field \"%s.%s\": default values are not allowed in proto3",
                                                 d->name, fp->name);
                        r = build_default(b, d->name, f, fp, &f->default_value);
                        if (r < 0)
                                return r;
                } else if (!w->proto3 && f->type == PROTOBUF_C_TYPE_ENUM && e->enum_first != 0) {
                        /* proto2: the first declared value, which need not be 0 */
                        int32_t *v = pool_alloc(pool, 1, sizeof(*v));

                        if (!v)
                                return -ENOMEM;
                        *v = e->enum_first;
                        f->default_value = v;
                }
        }

        /* Pass two: each oneof is a uint32 case and a union of its members. */
        for (size_t o = 0; o < mp->n_oneof_decl; o++) {
                size_t size = 0, align = 4, case_off, union_off;
                bool any = false;

                for (size_t i = 0; i < n; i++) {
                        const Google__Protobuf__FieldDescriptorProto *fp = mp->field[i];

                        if (!(fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || (size_t) fp->oneof_index != o)
                                continue;
                        any = true;
                        size = MAX(size, pbdyn_type_size(fields[i].type));
                        align = MAX(align, value_align(fields[i].type));
                }
                if (!any)
                        continue;       /* a synthetic oneof of a proto3 `optional` */
                off = align_to(off, 4);
                case_off = off;
                off += 4;
                off = align_to(off, align);
                union_off = off;
                off += size;
                for (size_t i = 0; i < n; i++) {
                        if (!(fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
                            (size_t) mp->field[i]->oneof_index != o)
                                continue;
                        fields[i].quantifier_offset = (unsigned) case_off;
                        fields[i].offset = (unsigned) union_off;
                }
        }

        /* protobuf-c finds fields by number in ranges over a sorted array. */
        qsort(fields, n, sizeof(*fields), field_number_compare);
        for (size_t i = 0; i < n; i++) {
                if (i > 0 && fields[i].id == fields[i - 1].id)
                        return pool_fail(pool, "message \"%s\": field number %u used twice", d->name, fields[i].id);
                numbers[i] = (int) fields[i].id;
                by_name[i] = (unsigned) i;
        }
        qsort_r(by_name, n, sizeof(*by_name), field_name_compare_r, fields);
        for (size_t i = 1; i < n; i++)
                if (strcmp(fields[by_name[i]].name, fields[by_name[i - 1]].name) == 0)
                        return pool_fail(pool, "message \"%s\": field \"%s\" declared twice", d->name,
                                         fields[by_name[i]].name);

        d->sizeof_message = align_to(off, 8);
        d->n_fields = (unsigned) n;
        d->fields = fields;
        d->fields_sorted_by_name = by_name;
        d->field_ranges = int_ranges(pool, numbers, n, &d->n_field_ranges);
        if (!d->field_ranges)
                return -ENOMEM;
        return 0;
}

static int build_service(Batch *b, const Google__Protobuf__ServiceDescriptorProto *sp, const char *package,
                         const char *file) {
        PbdynPool *pool = b->pool;
        PbdynService *s;
        PbdynMethod *m;
        char *name;
        int r;

        if (!name_is_identifier(sp->name))
                return pool_fail(pool, "service in \"%s\": invalid name", file);
        name = full_name(b, package, sp->name);
        if (!name)
                return pool_fail(pool, "service \"%s\": name too long", sp->name);
        if (sp->n_method > PBDYN_FIELDS_MAX)
                return pool_fail(pool, "service \"%s\": too many methods", name);
        s = pool_alloc(pool, 1, sizeof(*s));
        m = pool_alloc(pool, sp->n_method, sizeof(*m));
        if (!s || !m)
                return -ENOMEM;
        for (size_t i = 0; i < sp->n_method; i++) {
                const Google__Protobuf__MethodDescriptorProto *mp = sp->method[i];
                const TypeEntry *in, *out;

                if (!name_is_identifier(mp->name))
                        return pool_fail(pool, "service \"%s\": method %zu has an invalid name", name, i);
                in = pool_lookup(pool, b, mp->input_type);
                out = pool_lookup(pool, b, mp->output_type);
                if (!in || in->kind != TYPE_MESSAGE || !out || out->kind != TYPE_MESSAGE)
                        return pool_fail(pool, "method \"%s.%s\": unknown message type \"%s\"", name, mp->name,
                                         !in || in->kind != TYPE_MESSAGE ? mp->input_type ?: "" :
                                                                           mp->output_type ?: "");
                m[i] = (PbdynMethod) {
                        .name = mp->name,
                        .input_type = in->name,
                        .output_type = out->name,
                        .input = in->object,
                        .output = out->object,
                        .client_streaming = mp->has_client_streaming && mp->client_streaming,
                        .server_streaming = mp->has_server_streaming && mp->server_streaming,
                };
        }
        *s = (PbdynService) { .name = name, .file = file, .n_methods = sp->n_method, .methods = m };
        r = type_index_add(&b->types, name, TYPE_SERVICE, s);
        if (r < 0)
                return r;
        if (b->n_services == b->n_services_max) {
                size_t k = b->n_services_max ? b->n_services_max * 2 : 8;
                const PbdynService **a = reallocarray(b->services, k, sizeof(*a));

                if (!a)
                        return -ENOMEM;
                b->services = a;
                b->n_services_max = k;
        }
        b->services[b->n_services++] = s;
        return 0;
}

static bool pool_has_file(const PbdynPool *pool, const Batch *b, const char *name) {
        for (size_t i = 0; i < pool->n_files; i++)
                if (strcmp(pool->files[i], name) == 0)
                        return true;
        for (size_t i = 0; i < b->n_files; i++)
                if (strcmp(b->files[i]->name, name) == 0)
                        return true;
        return false;
}

static int batch_build(Batch *b, const Google__Protobuf__FileDescriptorSet *set) {
        PbdynPool *pool = b->pool;
        int r;

        b->files = calloc(set->n_file ?: 1, sizeof(*b->files));
        if (!b->files)
                return -ENOMEM;
        for (size_t i = 0; i < set->n_file; i++) {
                const Google__Protobuf__FileDescriptorProto *fp = set->file[i];

                if (!fp->name || !*fp->name || strlen(fp->name) > PBDYN_NAME_MAX)
                        return pool_fail(pool, "file %zu has no valid name", i);
                /* a file seen before, in this set or an earlier one, is the same file */
                if (!pool_has_file(pool, b, fp->name))
                        b->files[b->n_files++] = fp;
        }

        /* Pass one: every message and enum gets its name and an empty descriptor. */
        for (size_t i = 0; i < b->n_files; i++) {
                const Google__Protobuf__FileDescriptorProto *fp = b->files[i];
                const char *package = fp->package ?: "";
                bool proto3;

                if (!name_is_dotted(package))
                        return pool_fail(pool, "file \"%s\": invalid package name", fp->name);
                if (fp->syntax && strcmp(fp->syntax, "proto3") != 0 && strcmp(fp->syntax, "proto2") != 0)
                        return pool_fail(pool, "file \"%s\": unsupported syntax \"%s\"", fp->name, fp->syntax);
                proto3 = fp->syntax && strcmp(fp->syntax, "proto3") == 0;
                for (size_t j = 0; j < fp->n_enum_type; j++) {
                        r = build_enum(b, fp->enum_type[j], package, package);
                        if (r < 0)
                                return r;
                }
                for (size_t j = 0; j < fp->n_message_type; j++) {
                        r = collect_message(b, fp->message_type[j], package, package, proto3, 0);
                        if (r < 0)
                                return r;
                }
        }

        /* Names must be unique across the pool and the batch. */
        if (b->types.n_entries > 0)
                qsort(b->types.entries, b->types.n_entries, sizeof(TypeEntry), type_entry_compare);
        for (size_t i = 0; i < b->types.n_entries; i++) {
                if ((i > 0 && strcmp(b->types.entries[i].name, b->types.entries[i - 1].name) == 0) ||
                    type_index_find(&pool->types, b->types.entries[i].name))
                        return pool_fail(pool, "type \"%s\" defined twice", b->types.entries[i].name);
        }

        /* Pass two: fields, now that every type has a descriptor to point at. */
        for (size_t i = 0; i < b->n_messages; i++) {
                r = build_fields(b, &b->messages[i]);
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < b->n_files; i++) {
                const Google__Protobuf__FileDescriptorProto *fp = b->files[i];

                for (size_t j = 0; j < fp->n_service; j++) {
                        r = build_service(b, fp->service[j], fp->package ?: "", fp->name);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int batch_commit(Batch *b, Google__Protobuf__FileDescriptorSet *set) {
        PbdynPool *pool = b->pool;
        Google__Protobuf__FileDescriptorSet **sets;
        const PbdynService **services;
        char **files;
        size_t n_types = pool->types.n_entries;

        sets = reallocarray(pool->sets, pool->n_sets + 1, sizeof(*sets));
        if (!sets)
                return -ENOMEM;
        pool->sets = sets;
        files = reallocarray(pool->files, pool->n_files + b->n_files + 1, sizeof(*files));
        if (!files)
                return -ENOMEM;
        pool->files = files;
        services = reallocarray(pool->services, pool->n_services + b->n_services + 1, sizeof(*services));
        if (!services)
                return -ENOMEM;
        pool->services = services;
        for (size_t i = 0; i < b->types.n_entries; i++) {
                TypeEntry *e = &b->types.entries[i];
                int r = type_index_add(&pool->types, e->name, e->kind, e->object);

                if (r < 0) {
                        pool->types.n_entries = n_types;
                        return r;
                }
                pool->types.entries[pool->types.n_entries - 1].enum_first = e->enum_first;
        }

        /* Nothing fails from here on. */
        if (pool->types.n_entries > 0)
                qsort(pool->types.entries, pool->types.n_entries, sizeof(TypeEntry), type_entry_compare);
        for (size_t i = 0; i < b->n_files; i++)
                pool->files[pool->n_files++] = b->files[i]->name;
        for (size_t i = 0; i < b->n_services; i++)
                pool->services[pool->n_services++] = b->services[i];
        pool->sets[pool->n_sets++] = set;
        return 0;
}

/**
 * pbdyn_pool_add_set() - add the files of a serialized FileDescriptorSet
 * @pool: the pool
 * @data: the set, borrowed; several sets concatenated are one set
 * @size: its size in bytes
 *
 * Files already in the pool (by name) are skipped, so the sets of several
 * services can be added to one pool. Type names in the new files may refer
 * to types of files added before. On failure the pool is unchanged and
 * pbdyn_pool_error() says what was wrong.
 *
 * Return: 0; -EBADMSG if the set is malformed, refers to a type no file
 * defines, or is beyond our bounds (pbdyn_pool_error() says which); -ENOMEM.
 */
int pbdyn_pool_add_set(PbdynPool *pool, const void *data, size_t size) {
        Google__Protobuf__FileDescriptorSet *set;
        Batch b = { .pool = pool };
        size_t n_allocs = pool->n_allocs;
        char err[256];
        int r;

        assert(pool);
        pool->error[0] = 0;
        if (size > PBDYN_SET_SIZE_MAX)
                return pool_fail(pool, "descriptor set too large (%zu bytes)", size);
        r = pbdyn_check_wire(&google__protobuf__file_descriptor_set__descriptor, data, size, err, sizeof(err));
        if (r < 0)
                return pool_fail(pool, "descriptor set: %s", err);
        set = google__protobuf__file_descriptor_set__unpack(NULL, size, data);
        if (!set)
                return pool_fail(pool, "descriptor set: not a valid google.protobuf.FileDescriptorSet");

        r = batch_build(&b, set);
        if (r >= 0)
                r = batch_commit(&b, set);
        if (r < 0) {
                pool_rollback(pool, n_allocs);
                google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
                if (r == -ENOMEM)
                        snprintf(pool->error, sizeof(pool->error), "out of memory");
        }
        free(b.types.entries);
        free(b.messages);
        free(b.files);
        free(b.services);
        return r;
}

static int wire_varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *ret) {
        uint64_t v = 0;

        for (unsigned i = 0; i < 10; i++) {
                if (*pos >= n)
                        return -EBADMSG;
                v |= (uint64_t) (p[*pos] & 0x7f) << (7 * i);
                if (!(p[(*pos)++] & 0x80)) {
                        *ret = v;
                        return 0;
                }
        }
        return -EBADMSG;
}

_printf_(3, 4)
static int wire_fail(char *errbuf, size_t errlen, const char *fmt, ...) {
        va_list ap;

        if (errlen > 0) {
                va_start(ap, fmt);
                vsnprintf(errbuf, errlen, fmt, ap);
                va_end(ap);
        }
        return -EBADMSG;
}

static int wire_walk(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t n, unsigned depth,
                     uint64_t *budget, char *errbuf, size_t errlen) {
        size_t pos = 0;

        if (depth > PBDYN_DEPTH_MAX)
                return wire_fail(errbuf, errlen, "messages nested deeper than %u", PBDYN_DEPTH_MAX);
        if (*budget < desc->sizeof_message)
                return wire_fail(errbuf, errlen, "message would take too much memory to unpack");
        *budget -= desc->sizeof_message;

        while (pos < n) {
                const ProtobufCFieldDescriptor *f;
                uint64_t key, len, cost = 0;

                if (wire_varint(p, n, &pos, &key) < 0)
                        return wire_fail(errbuf, errlen, "truncated field key in %s", desc->name);
                if ((key >> 3) == 0 || (key >> 3) > PBDYN_FIELD_NUMBER_MAX)
                        return wire_fail(errbuf, errlen, "invalid field number in %s", desc->name);
                f = protobuf_c_message_descriptor_get_field(desc, (unsigned) (key >> 3));
                switch (key & 7) {
                case 0:
                        if (wire_varint(p, n, &pos, &len) < 0)
                                return wire_fail(errbuf, errlen, "truncated varint in %s", desc->name);
                        cost = 16;
                        break;
                case 1:
                case 5:
                        len = (key & 7) == 1 ? 8 : 4;
                        if (n - pos < len)
                                return wire_fail(errbuf, errlen, "truncated fixed field in %s", desc->name);
                        pos += len;
                        cost = 16;
                        break;
                case 2:
                        if (wire_varint(p, n, &pos, &len) < 0 || n - pos < len)
                                return wire_fail(errbuf, errlen, "truncated length-delimited field in %s",
                                                 desc->name);
                        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                                int r = wire_walk(f->descriptor, p + pos, len, depth + 1, budget, errbuf, errlen);
                                if (r < 0)
                                        return r;
                                cost = 16;
                        } else {
                                /* bytes, or packed numbers: at most 8 bytes of array per byte */
                                cost = len * 8 + 24;
                        }
                        pos += len;
                        break;
                default:
                        return wire_fail(errbuf, errlen, "unsupported wire type %u in %s",
                                         (unsigned) (key & 7), desc->name);
                }
                /* protobuf-c's scan keeps one record per field on top */
                cost += 48;
                if (*budget < cost)
                        return wire_fail(errbuf, errlen, "message would take too much memory to unpack");
                *budget -= cost;
        }
        return 0;
}

/**
 * pbdyn_check_wire() - check that bytes are safe to give protobuf-c's unpack
 * @desc: the message type, from a pool or generated
 * @data: the bytes, borrowed
 * @size: their number
 * @errbuf: where to write why not, or NULL
 * @errlen: its size
 *
 * protobuf_c_message_unpack() recurses once per nested message without a
 * limit, and allocates a whole struct per (even empty) sub-message, so
 * bytes from another process could exhaust the stack or, two bytes per
 * sub-message, the heap. This walks the wire format along @desc first:
 * nesting at most PBDYN_DEPTH_MAX, what unpacking allocates within a budget
 * proportional to @size, and the framing well-formed.
 *
 * Return: 0 if unpacking is safe to try (it may still fail, e.g. on a wire
 * type that does not match the field); -EBADMSG otherwise.
 */
int pbdyn_check_wire(const ProtobufCMessageDescriptor *desc, const void *data, size_t size, char *errbuf,
                     size_t errlen) {
        uint64_t budget = PBDYN_ALLOC_BUDGET + (uint64_t) size * 32;

        if (size > 0 && !data)
                return wire_fail(errbuf, errlen, "no data");
        return wire_walk(desc, data, size, 0, &budget, errbuf, errlen);
}
