/*
 * Unit tests of the dynamic protobuf codec: cli/pb-dynamic.c (descriptors
 * built from FileDescriptorSets) and cli/pb-json.c (messages to and from
 * JSON).
 *
 * The layouts pb-dynamic.c computes are compared field by field with what
 * protoc-c generated for the same files (descriptor.proto, proto2 with
 * defaults; plexus.proto, proto3), so a struct that protobuf-c would read
 * wrong cannot pass. Hostile sets are built here with the generated
 * descriptor.proto code. The JSON mapping itself is checked against python
 * by pb-json-crosscheck.py; here are its error messages and options.
 *
 * Arguments: the descriptor sets of pb-json-test.proto, pb-json-proto2.proto,
 * descriptor.proto and plexus.proto, built by meson.
 */

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "descriptor.pb-c.h"
#include "pb-dynamic.h"
#include "pb-json.h"
#include "plexus.pb-c.h"
#include "util.h"

static const char *set_paths[4];

typedef struct Blob {
        uint8_t *data;
        size_t size;
} Blob;

static Blob read_file(const char *path) {
        Blob b = {};
        FILE *f = fopen(path, "re");
        long n;

        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        assert_true(n > 0);
        rewind(f);
        b.data = malloc((size_t) n);
        assert_non_null(b.data);
        assert_int_equal(fread(b.data, 1, (size_t) n, f), (size_t) n);
        fclose(f);
        b.size = (size_t) n;
        return b;
}

static PbdynPool *pool_from(unsigned which) {
        PbdynPool *pool;
        Blob b = read_file(set_paths[which]);

        assert_int_equal(pbdyn_pool_new(&pool), 0);
        if (pbdyn_pool_add_set(pool, b.data, b.size) < 0)
                fail_msg("%s: %s", set_paths[which], pbdyn_pool_error(pool));
        free(b.data);
        return pool;
}

/* JSON text -> bytes -> JSON text, through a descriptor. */
static char *round_trip(const ProtobufCMessageDescriptor *d, const char *json, unsigned flags) {
        _cleanup_(freep) uint8_t *bytes = NULL;
        _cleanup_(freep) char *error = NULL;
        char *out = NULL;
        size_t n;

        if (pbjson_encode(d, json, 0, &bytes, &n, &error) < 0)
                fail_msg("encode %s: %s", json, error);
        if (pbjson_decode(d, bytes, n, flags, &out, &error) < 0)
                fail_msg("decode %s: %s", json, error);
        return out;
}

static void assert_round_trip(const ProtobufCMessageDescriptor *d, const char *json, const char *expected,
                              unsigned flags) {
        _cleanup_(freep) char *out = round_trip(d, json, flags);

        if (strcmp(out, expected) != 0)
                fail_msg("%s\n  gave     %s\n  expected %s", json, out, expected);
}

static void assert_encode_error(const ProtobufCMessageDescriptor *d, const char *json, const char *expected) {
        _cleanup_(freep) uint8_t *bytes = NULL;
        _cleanup_(freep) char *error = NULL;
        size_t n;
        int r;

        r = pbjson_encode(d, json, 0, &bytes, &n, &error);
        if (r >= 0)
                fail_msg("%s: accepted", json);
        assert_int_equal(r, -EINVAL);
        assert_non_null(error);
        if (strstr(error, expected) == NULL)
                fail_msg("%s\n  error    %s\n  expected %s", json, error, expected);
}

static void test_pool_lookup(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = pool_from(0);
        const PbdynService *const *services;
        const PbdynService *s;
        const ProtobufCEnumDescriptor *e;

        assert_non_null(pbdyn_pool_find_message(pool, "plexus.test.Everything"));
        assert_non_null(pbdyn_pool_find_message(pool, ".plexus.test.Everything"));
        assert_non_null(pbdyn_pool_find_message(pool, "plexus.test.Everything.Inner"));
        assert_non_null(pbdyn_pool_find_message(pool, "plexus.test.imported.Point"));
        assert_null(pbdyn_pool_find_message(pool, "plexus.test.Nope"));
        assert_null(pbdyn_pool_find_message(pool, "plexus.test.Everything.Mode"));
        assert_null(pbdyn_pool_find_message(pool, "plexus.test.Thermostat"));

        e = pbdyn_pool_find_enum(pool, "plexus.test.imported.Colour");
        assert_non_null(e);
        assert_string_equal(protobuf_c_enum_descriptor_get_value(e, -3)->name, "COLOUR_BLUE");
        assert_int_equal(protobuf_c_enum_descriptor_get_value_by_name(e, "COLOUR_GREEN")->value, 2);
        assert_non_null(pbdyn_pool_find_enum(pool, "plexus.test.Everything.Mode"));

        s = pbdyn_pool_find_service(pool, "plexus.test.Thermostat");
        assert_non_null(s);
        assert_int_equal(s->n_methods, 2);
        assert_string_equal(s->methods[0].name, "SetTarget");
        assert_string_equal(s->methods[0].input_type, "plexus.test.Everything");
        assert_string_equal(s->methods[0].output_type, "plexus.test.Scalars");
        assert_ptr_equal(s->methods[1].output, pbdyn_pool_find_message(pool, "plexus.test.imported.Point"));
        assert_string_equal(s->file, "pb-json-test.proto");
        assert_int_equal(pbdyn_pool_get_services(pool, &services), 1);
        assert_ptr_equal(services[0], s);
}

static void test_pool_dedupe(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = NULL;
        const PbdynService *const *services;
        Blob a = read_file(set_paths[0]), b = read_file(set_paths[1]);
        _cleanup_(freep) uint8_t *twice = malloc(a.size * 2);
        const ProtobufCMessageDescriptor *d;

        assert_int_equal(pbdyn_pool_new(&pool), 0);
        /* two serialized sets concatenated are one set with each file twice */
        memcpy(twice, a.data, a.size);
        memcpy(twice + a.size, a.data, a.size);
        assert_int_equal(pbdyn_pool_add_set(pool, twice, a.size * 2), 0);
        d = pbdyn_pool_find_message(pool, "plexus.test.Everything");
        assert_int_equal(pbdyn_pool_add_set(pool, a.data, a.size), 0);
        assert_int_equal(pbdyn_pool_add_set(pool, b.data, b.size), 0);
        /* descriptors stay where they were: callers may hold them */
        assert_ptr_equal(pbdyn_pool_find_message(pool, "plexus.test.Everything"), d);
        assert_non_null(pbdyn_pool_find_message(pool, "plexus.test2.Legacy"));
        assert_int_equal(pbdyn_pool_get_services(pool, &services), 1);
        free(a.data);
        free(b.data);
}

/* Our layout of every message of a file against protoc-c's. */
static void compare_layout(const ProtobufCMessageDescriptor *gen, const ProtobufCMessageDescriptor *dyn) {
        assert_non_null(dyn);
        assert_string_equal(gen->name, dyn->name);
        if (gen->sizeof_message != dyn->sizeof_message)
                fail_msg("%s: size %zu, protoc-c %zu", gen->name, dyn->sizeof_message, gen->sizeof_message);
        assert_int_equal(gen->n_fields, dyn->n_fields);
        assert_int_equal(gen->n_field_ranges, dyn->n_field_ranges);
        for (unsigned i = 0; i <= gen->n_field_ranges; i++) {
                assert_int_equal(gen->field_ranges[i].orig_index, dyn->field_ranges[i].orig_index);
                if (i < gen->n_field_ranges)
                        assert_int_equal(gen->field_ranges[i].start_value, dyn->field_ranges[i].start_value);
        }
        for (unsigned i = 0; i < gen->n_fields; i++) {
                const ProtobufCFieldDescriptor *g = &gen->fields[i], *d = &dyn->fields[i];

                assert_string_equal(g->name, d->name);
                assert_int_equal(gen->fields_sorted_by_name[i], dyn->fields_sorted_by_name[i]);
                assert_int_equal(g->id, d->id);
                assert_int_equal(g->type, d->type);
                if (g->offset != d->offset || g->quantifier_offset != d->quantifier_offset)
                        fail_msg("%s.%s: offset %u/%u, protoc-c %u/%u", gen->name, g->name, d->offset,
                                 d->quantifier_offset, g->offset, g->quantifier_offset);
                assert_int_equal(g->flags, d->flags);
                /* protoc-c marks proto3 oneof members NONE, we OPTIONAL: protobuf-c treats both alike */
                if (!(g->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
                        assert_int_equal(g->label, d->label);
                if (g->type == PROTOBUF_C_TYPE_MESSAGE)
                        assert_string_equal(((const ProtobufCMessageDescriptor *) g->descriptor)->name,
                                            ((const ProtobufCMessageDescriptor *) d->descriptor)->name);
                if (g->type == PROTOBUF_C_TYPE_ENUM)
                        assert_string_equal(((const ProtobufCEnumDescriptor *) g->descriptor)->name,
                                            ((const ProtobufCEnumDescriptor *) d->descriptor)->name);
                /* proto2 defaults, by value (protoc-c's proto3 strings default to "" by pointer) */
                if (g->default_value && g->type != PROTOBUF_C_TYPE_STRING) {
                        assert_non_null(d->default_value);
                        if (g->type == PROTOBUF_C_TYPE_BYTES) {
                                const ProtobufCBinaryData *x = g->default_value, *y = d->default_value;

                                assert_int_equal(x->len, y->len);
                                assert_memory_equal(x->data, y->data, x->len);
                        } else if (g->type == PROTOBUF_C_TYPE_BOOL) {
                                assert_int_equal(*(const protobuf_c_boolean *) g->default_value,
                                                 *(const protobuf_c_boolean *) d->default_value);
                        } else {
                                size_t n = g->type == PROTOBUF_C_TYPE_INT64 || g->type == PROTOBUF_C_TYPE_UINT64 ||
                                           g->type == PROTOBUF_C_TYPE_DOUBLE || g->type == PROTOBUF_C_TYPE_SINT64 ||
                                           g->type == PROTOBUF_C_TYPE_FIXED64 || g->type == PROTOBUF_C_TYPE_SFIXED64
                                        ? 8 : 4;

                                assert_memory_equal(g->default_value, d->default_value, n);
                        }
                } else if (g->default_value && g->default_value != protobuf_c_empty_string) {
                        assert_string_equal(g->default_value, d->default_value);
                }
        }
}

static void compare_file(PbdynPool *pool, const ProtobufCMessageDescriptor *const *gen, size_t n) {
        for (size_t i = 0; i < n; i++)
                compare_layout(gen[i], pbdyn_pool_find_message(pool, gen[i]->name));
}

static void test_layout_like_protoc_c(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *descriptor = pool_from(2);
        _cleanup_(pbdyn_pool_freep) PbdynPool *plexus = pool_from(3);
        const ProtobufCMessageDescriptor *const descriptor_messages[] = {
                &google__protobuf__file_descriptor_set__descriptor,
                &google__protobuf__file_descriptor_proto__descriptor,
                &google__protobuf__descriptor_proto__descriptor,
                &google__protobuf__descriptor_proto__extension_range__descriptor,
                &google__protobuf__descriptor_proto__reserved_range__descriptor,
                &google__protobuf__field_descriptor_proto__descriptor,
                &google__protobuf__oneof_descriptor_proto__descriptor,
                &google__protobuf__enum_descriptor_proto__descriptor,
                &google__protobuf__method_descriptor_proto__descriptor,
                &google__protobuf__file_options__descriptor,
                &google__protobuf__message_options__descriptor,
                &google__protobuf__field_options__descriptor,
                &google__protobuf__enum_value_options__descriptor,
                &google__protobuf__method_options__descriptor,
                &google__protobuf__uninterpreted_option__descriptor,
                &google__protobuf__uninterpreted_option__name_part__descriptor,
                &google__protobuf__source_code_info__location__descriptor,
                &google__protobuf__generated_code_info__annotation__descriptor,
        };
        const ProtobufCMessageDescriptor *const plexus_messages[] = {
                &plexus__header__descriptor,
                &plexus__hello__descriptor,
                &plexus__welcome__descriptor,
                &plexus__name_list__descriptor,
                &plexus__name_entry__descriptor,
                &plexus__name_owner_changed__descriptor,
                &plexus__monitor_request__descriptor,
                &plexus__client_info__descriptor,
                &plexus__client_list__descriptor,
                &plexus__stats__descriptor,
        };
        const ProtobufCEnumDescriptor *e;

        compare_file(descriptor, descriptor_messages, ELEMENTSOF(descriptor_messages));
        compare_file(plexus, plexus_messages, ELEMENTSOF(plexus_messages));

        e = pbdyn_pool_find_enum(descriptor, "google.protobuf.FieldDescriptorProto.Type");
        assert_non_null(e);
        assert_int_equal(e->n_values, google__protobuf__field_descriptor_proto__type__descriptor.n_values);
        assert_int_equal(e->n_value_ranges, google__protobuf__field_descriptor_proto__type__descriptor.n_value_ranges);
}

/* A dynamic descriptor unpacks what generated code packed, and back. */
static void test_dynamic_unpacks_generated(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = pool_from(3);
        const ProtobufCMessageDescriptor *d = pbdyn_pool_find_message(pool, "plexus.ClientList");
        Plexus__ClientInfo c1 = PLEXUS__CLIENT_INFO__INIT, c2 = PLEXUS__CLIENT_INFO__INIT;
        Plexus__ClientInfo *clients[] = { &c1, &c2 };
        Plexus__ClientList list = PLEXUS__CLIENT_LIST__INIT;
        char *names[] = { "org.example.A", "org.example.B" };
        _cleanup_(freep) uint8_t *buf = NULL, *buf2 = NULL;
        _cleanup_(freep) char *json = NULL, *json2 = NULL;
        ProtobufCMessage *m;
        size_t n;

        c1.names = names;
        c1.n_names = 2;
        c2.queued_names = names + 1;
        c2.n_queued_names = 1;
        list.clients = clients;
        list.n_clients = 2;
        n = protobuf_c_message_get_packed_size(&list.base);
        buf = malloc(n);
        protobuf_c_message_pack(&list.base, buf);

        m = protobuf_c_message_unpack(d, NULL, n, buf);
        assert_non_null(m);
        assert_int_equal(protobuf_c_message_get_packed_size(m), n);
        buf2 = malloc(n);
        protobuf_c_message_pack(m, buf2);
        assert_memory_equal(buf, buf2, n);
        protobuf_c_message_free_unpacked(m, NULL);

        /* the same JSON from the generated and the dynamic descriptor */
        assert_int_equal(pbjson_decode(&plexus__client_list__descriptor, buf, n, 0, &json, NULL), 0);
        assert_int_equal(pbjson_decode(d, buf, n, 0, &json2, NULL), 0);
        assert_string_equal(json, json2);
        assert_string_equal(json, "{\"clients\":[{\"names\":[\"org.example.A\",\"org.example.B\"]},"
                                  "{\"queuedNames\":[\"org.example.B\"]}]}");
}

static void test_generated_stats(void **state) {
        Plexus__Stats s = PLEXUS__STATS__INIT;
        _cleanup_(freep) uint8_t *buf = NULL, *out = NULL;
        _cleanup_(freep) char *json = NULL;
        Plexus__Stats *back;
        size_t n;

        s.version = "0.1.0";
        s.n_clients = 3;
        s.uptime_usec = UINT64_MAX;
        n = protobuf_c_message_get_packed_size(&s.base);
        buf = malloc(n);
        protobuf_c_message_pack(&s.base, buf);
        assert_int_equal(pbjson_decode(&plexus__stats__descriptor, buf, n, 0, &json, NULL), 0);
        assert_string_equal(json, "{\"version\":\"0.1.0\",\"uptimeUsec\":\"18446744073709551615\",\"nClients\":\"3\"}");

        assert_int_equal(pbjson_encode(&plexus__stats__descriptor, "{\"n_clients\": 7, \"version\": \"x\"}", 0, &out,
                                       &n, NULL), 0);
        back = plexus__stats__unpack(NULL, n, out);
        assert_non_null(back);
        assert_int_equal(back->n_clients, 7);
        assert_string_equal(back->version, "x");
        plexus__stats__free_unpacked(back, NULL);
}

static void test_round_trips(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = pool_from(0);
        const ProtobufCMessageDescriptor *e = pbdyn_pool_find_message(pool, "plexus.test.Everything");
        const ProtobufCMessageDescriptor *s = pbdyn_pool_find_message(pool, "plexus.test.Scalars");

        assert_round_trip(e, "{}", "{}", 0);
        assert_round_trip(e, "{\"target_temperature\": 21.5}", "{\"targetTemperature\":21.5}", 0);
        assert_round_trip(e, "{\"targetTemperature\": 21.5}", "{\"target_temperature\":21.5}", PBJSON_PROTO_NAMES);
        assert_round_trip(s,
                "{\"i32\": -1, \"i64\": -9223372036854775808, \"u32\": \"4294967295\", \"u64\": \"18446744073709551615\","
                " \"s32\": -2147483648, \"s64\": \"-5\", \"f32\": 1e3, \"f64\": 18446744073709551615,"
                " \"sf32\": -7, \"sf64\": \"9223372036854775807\", \"fl\": 0.1, \"db\": \"-Infinity\", \"flag\": true,"
                " \"text\": \"\\u00e9\\ud83d\\ude00\\n\", \"blob\": \"-_8\", \"colour\": \"COLOUR_BLUE\"}",
                "{\"i32\":-1,\"i64\":\"-9223372036854775808\",\"u32\":4294967295,\"u64\":\"18446744073709551615\","
                "\"s32\":-2147483648,\"s64\":\"-5\",\"f32\":1000,\"f64\":\"18446744073709551615\",\"sf32\":-7,"
                "\"sf64\":\"9223372036854775807\",\"fl\":0.1,\"db\":\"-Infinity\",\"flag\":true,"
                "\"text\":\"\xc3\xa9\xf0\x9f\x98\x80\\n\",\"blob\":\"+/8=\",\"colour\":\"COLOUR_BLUE\"}", 0);
        assert_round_trip(s, "{\"db\": \"NaN\", \"fl\": \"Infinity\", \"colour\": 77}",
                          "{\"fl\":\"Infinity\",\"db\":\"NaN\",\"colour\":77}", 0);
        /* proto3 fields at their defaults are not written, unless asked for */
        assert_round_trip(s, "{\"i32\": 0, \"text\": \"\", \"colour\": \"COLOUR_UNSPECIFIED\", \"flag\": null}", "{}", 0);
        assert_round_trip(s, "{}",
                "{\"i32\":0,\"i64\":\"0\",\"u32\":0,\"u64\":\"0\",\"s32\":0,\"s64\":\"0\",\"f32\":0,\"f64\":\"0\","
                "\"sf32\":0,\"sf64\":\"0\",\"fl\":0,\"db\":0,\"flag\":false,\"text\":\"\",\"blob\":\"\","
                "\"colour\":\"COLOUR_UNSPECIFIED\"}", PBJSON_INCLUDE_DEFAULTS);
        /* proto3 `optional` and oneof members are written when set, even to defaults */
        assert_round_trip(e, "{\"maybeInt\": 0, \"maybeText\": \"\", \"choiceNumber\": 0}",
                          "{\"choiceNumber\":\"0\",\"maybeInt\":0,\"maybeText\":\"\"}", 0);
        assert_round_trip(e, "{\"choiceInner\": {}}", "{\"choiceInner\":{}}", 0);
        assert_round_trip(e,
                "{\"packedInts\": [1, -2, 3], \"unpackedInts\": [4294967295, 0], \"modes\": [\"MODE_COOL\", 1, 9],"
                " \"names\": [\"a\", \"\"], \"blobs\": [\"AA==\", \"\"], \"packedBools\": [true, false],"
                " \"inners\": [{\"value\": 1, \"child\": {\"tags\": [\"x\"]}}, {}],"
                " \"counts\": {\"b\": 2, \"a\": 0}, \"labels\": {\"-7\": \"minus seven\"},"
                " \"innerMap\": {\"k\": {\"value\": 3}}, \"flagsById\": {\"18446744073709551615\": true},"
                " \"modeByFlag\": {\"true\": \"MODE_HEAT\", \"false\": 0}, \"blobsByKey\": {\"-1\": \"AQ\"},"
                " \"mode\": \"MODE_COOL\", \"point\": {\"x\": 1, \"label\": \"p\"}, \"bigFieldNumber\": 1,"
                " \"fieldNumberGap\": 2}",
                "{\"mode\":\"MODE_COOL\",\"point\":{\"x\":1,\"label\":\"p\"},\"packedInts\":[1,-2,3],"
                "\"packedBools\":[true,false],\"unpackedInts\":[4294967295,0],\"names\":[\"a\",\"\"],"
                "\"blobs\":[\"AA==\",\"\"],\"inners\":[{\"value\":1,\"child\":{\"tags\":[\"x\"]}},{}],"
                "\"modes\":[\"MODE_COOL\",\"MODE_HEAT\",9],\"counts\":{\"b\":2,\"a\":0},"
                "\"labels\":{\"-7\":\"minus seven\"},\"innerMap\":{\"k\":{\"value\":3}},"
                "\"flagsById\":{\"18446744073709551615\":true},\"modeByFlag\":{\"true\":\"MODE_HEAT\",\"false\":\"MODE_OFF\"},"
                "\"blobsByKey\":{\"-1\":\"AQ==\"},\"fieldNumberGap\":2,\"bigFieldNumber\":1}", 0);
}

static void test_proto2(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = pool_from(1);
        const ProtobufCMessageDescriptor *d = pbdyn_pool_find_message(pool, "plexus.test2.Legacy");
        const ProtobufCFieldDescriptor *f;
        ProtobufCMessage *m;
        const uint8_t id_only[] = { 0x08, 0x07 };
        const ProtobufCBinaryData *magic;

        /* protobuf-c applies the defaults we built */
        m = protobuf_c_message_unpack(d, NULL, sizeof(id_only), id_only);
        assert_non_null(m);
        f = protobuf_c_message_descriptor_get_field_by_name(d, "name");
        assert_string_equal(*(char **) ((char *) m + f->offset), "unnamed");
        f = protobuf_c_message_descriptor_get_field_by_name(d, "count");
        assert_int_equal(*(int64_t *) ((char *) m + f->offset), -42);
        f = protobuf_c_message_descriptor_get_field_by_name(d, "scale");
        assert_true(isinf(*(float *) ((char *) m + f->offset)));
        f = protobuf_c_message_descriptor_get_field_by_name(d, "magic");
        magic = (const ProtobufCBinaryData *) ((char *) m + f->offset);
        assert_int_equal(magic->len, 6);
        assert_memory_equal(magic->data, "\001\002xyz\377", 6);
        f = protobuf_c_message_descriptor_get_field_by_name(d, "level");
        assert_int_equal(*(int32_t *) ((char *) m + f->offset), 5);     /* first declared, not 0 */
        f = protobuf_c_message_descriptor_get_field_by_name(d, "level2");
        assert_int_equal(*(int32_t *) ((char *) m + f->offset), 9);
        protobuf_c_message_free_unpacked(m, NULL);

        /* presence, not value, decides what is written */
        assert_round_trip(d, "{\"id\": 7}", "{\"id\":7}", 0);
        assert_round_trip(d, "{\"id\": 0, \"count\": 0, \"name\": \"\", \"level\": \"LEVEL_LOW\", \"pickNumber\": 0}",
                          "{\"id\":0,\"name\":\"\",\"count\":\"0\",\"level\":\"LEVEL_LOW\",\"pickNumber\":0}", 0);
        assert_round_trip(d, "{\"id\": 1, \"packedNumbers\": [1, 2], \"numbers\": [3], \"attrs\": {\"x\": 1},"
                             " \"next\": {\"id\": 2, \"next\": {\"id\": 3}}}",
                          "{\"id\":1,\"numbers\":[3],\"packedNumbers\":[1,2],\"next\":{\"id\":2,\"next\":{\"id\":3}},"
                          "\"attrs\":{\"x\":1}}", 0);
        assert_encode_error(d, "{}", "field \"id\": missing, and required by message plexus.test2.Legacy");
        assert_encode_error(d, "{\"id\": null}", "field \"id\": required by message plexus.test2.Legacy, cannot be null");
        assert_encode_error(d, "{\"id\": 1, \"next\": {}}", "field \"next.id\": missing");
}

static void test_json_errors(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = pool_from(0);
        const ProtobufCMessageDescriptor *e = pbdyn_pool_find_message(pool, "plexus.test.Everything");

        assert_encode_error(e, "{\"targetTemperature\": \"hot\"}",
                            "field \"targetTemperature\": expected a number, got \"hot\"");
        assert_encode_error(e, "{\"targetTemperature\": true}",
                            "field \"targetTemperature\": expected a number, got a boolean");
        assert_encode_error(e, "{\"target\": 21.5}",
                            "field \"target\": no such field in message plexus.test.Everything");
        assert_encode_error(e, "{\"scalars\": {\"i32\": 2147483648}}", "field \"scalars.i32\": 2147483648 is out of range");
        assert_encode_error(e, "{\"scalars\": {\"i32\": -2147483649}}", "field \"scalars.i32\": -2147483649 is out of range");
        assert_encode_error(e, "{\"scalars\": {\"u32\": -1}}", "field \"scalars.u32\": -1 is out of range");
        assert_encode_error(e, "{\"scalars\": {\"u64\": \"18446744073709551616\"}}",
                            "field \"scalars.u64\": 18446744073709551616 is out of range");
        assert_encode_error(e, "{\"scalars\": {\"i64\": 1.5}}", "field \"scalars.i64\": 1.5 is not an integer");
        assert_encode_error(e, "{\"scalars\": {\"i64\": \"12 \"}}", "field \"scalars.i64\": expected an integer, got \"12 \"");
        assert_encode_error(e, "{\"scalars\": {\"fl\": 1e39}}", "field \"scalars.fl\": 1e39 is out of range for a float");
        assert_encode_error(e, "{\"scalars\": {\"db\": \"nan\"}}", "field \"scalars.db\": expected a number, got \"nan\"");
        assert_encode_error(e, "{\"scalars\": {\"blob\": \"AQ*=\"}}", "field \"scalars.blob\": invalid base64");
        assert_encode_error(e, "{\"scalars\": {\"blob\": \"A\"}}", "field \"scalars.blob\": invalid base64");
        assert_encode_error(e, "{\"scalars\": {\"text\": 5}}", "field \"scalars.text\": expected a string, got a number");
        assert_encode_error(e, "{\"scalars\": {\"text\": \"a\\u0000b\"}}", "field \"scalars.text\": string contains a NUL");
        assert_encode_error(e, "{\"scalars\": {\"flag\": 1}}", "field \"scalars.flag\": expected true or false, got a number");
        assert_encode_error(e, "{\"mode\": \"MODE_WARM\"}",
                            "field \"mode\": unknown value \"MODE_WARM\" of enum plexus.test.Everything.Mode");
        assert_encode_error(e, "{\"mode\": 2.5}", "field \"mode\": expected a name of enum plexus.test.Everything.Mode, got a number");
        assert_encode_error(e, "{\"packedInts\": [1, \"x\"]}", "field \"packedInts[1]\": expected an integer, got \"x\"");
        assert_encode_error(e, "{\"packedInts\": [1, null]}", "field \"packedInts[1]\": null is not a valid element");
        assert_encode_error(e, "{\"packedInts\": 1}", "field \"packedInts\": expected an array, got a number");
        assert_encode_error(e, "{\"inners\": [{}, {\"child\": {\"value\": \"v\"}}]}",
                            "field \"inners[1].child.value\": expected an integer, got \"v\"");
        assert_encode_error(e, "{\"counts\": {\"a\": \"b\"}}", "field \"counts[\"a\"]\": expected an integer, got \"b\"");
        assert_encode_error(e, "{\"labels\": {\"x\": \"b\"}}", "field \"labels[\"x\"]\": expected an integer, got \"x\"");
        assert_encode_error(e, "{\"modeByFlag\": {\"yes\": 1}}", "map key must be \"true\" or \"false\"");
        assert_encode_error(e, "{\"counts\": [1]}", "field \"counts\": expected an object (a map), got an array");
        assert_encode_error(e, "{\"choiceText\": \"a\", \"choiceNumber\": 1}",
                            "field \"choiceNumber\": field \"choice_text\" of the same oneof is set already");
        assert_encode_error(e, "{\"targetTemperature\": 1, \"target_temperature\": 2}",
                            "field \"target_temperature\": given twice");
        assert_encode_error(e, "{\"inner\": 5}",
                            "field \"inner\": expected an object (message plexus.test.Everything.Inner), got a number");
        assert_encode_error(e, "[1]", "expected an object (message plexus.test.Everything), got an array");
        assert_encode_error(e, "{\"mode\": }", "invalid JSON at line 1, column 10");
        assert_encode_error(e, "{\n  \"mode\": 1,\n  x}", "invalid JSON at line 3, column 3");
        assert_encode_error(e, "{} x", "invalid JSON at line 1, column 4");
        assert_encode_error(e, "{\"mode\": 1", "invalid JSON: unexpected end of text");
        assert_encode_error(e, "{\"text\": \"\xff\"}", "invalid JSON");
}

static void test_well_known_types(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = pool_from(0);
        const ProtobufCMessageDescriptor *e = pbdyn_pool_find_message(pool, "plexus.test.Everything");
        const ProtobufCMessageDescriptor *ts = pbdyn_pool_find_message(pool, "google.protobuf.Timestamp");
        /* Timestamp{seconds: 253402300800}: one second after 9999-12-31T23:59:59Z */
        const uint8_t too_late[] = { 0x08, 0x80, 0x83, 0xd1, 0xff, 0xaf, 0x07 };
        char *json = NULL, *error = NULL;

        assert_round_trip(e,
                "{\"when\": \"2024-02-29T14:00:00.5+02:00\", \"howLong\": \"-1.000000001s\", \"wrappedInt64\": \"0\","
                " \"wrappedString\": \"\", \"wrappedFloat\": \"NaN\", \"wrappedBool\": false, \"wrappedBytes\": \"AQ==\","
                " \"times\": [\"0001-01-01T00:00:00Z\", \"9999-12-31T23:59:59.999999999Z\", \"1970-01-01T00:00:00.000001Z\"],"
                " \"durations\": {\"a\": \"315576000000s\", \"b\": \"0.250s\"}}",
                "{\"when\":\"2024-02-29T12:00:00.500Z\",\"howLong\":\"-1.000000001s\",\"wrappedInt64\":\"0\","
                "\"wrappedString\":\"\",\"wrappedBool\":false,\"wrappedBytes\":\"AQ==\",\"wrappedFloat\":\"NaN\","
                "\"times\":[\"0001-01-01T00:00:00Z\",\"9999-12-31T23:59:59.999999999Z\",\"1970-01-01T00:00:00.000001Z\"],"
                "\"durations\":{\"a\":\"315576000000s\",\"b\":\"0.250s\"}}", 0);
        assert_round_trip(ts, "\"1969-12-31T23:59:59Z\"", "\"1969-12-31T23:59:59Z\"", 0);
        assert_encode_error(e, "{\"when\": \"2023-02-29T00:00:00Z\"}",
                            "field \"when\": expected an RFC 3339 timestamp like \"2024-05-01T12:00:00Z\", got \"2023-02-29T00:00:00Z\"");
        assert_encode_error(e, "{\"when\": \"2024-01-01 00:00:00Z\"}", "expected an RFC 3339 timestamp");
        assert_encode_error(e, "{\"when\": \"2024-01-01T00:00:00\"}", "expected an RFC 3339 timestamp");
        assert_encode_error(e, "{\"when\": \"0001-01-01T00:00:00+00:01\"}", "is out of range");
        assert_encode_error(e, "{\"when\": 5}", "field \"when\": expected a timestamp string, got a number");
        assert_encode_error(e, "{\"howLong\": \"315576000001s\"}", "field \"howLong\": duration \"315576000001s\" is out of range");
        assert_encode_error(e, "{\"howLong\": \"1.0000000001s\"}", "expected a duration like \"1.5s\"");
        assert_encode_error(e, "{\"howLong\": \"1\"}", "expected a duration like \"1.5s\"");
        assert_encode_error(e, "{\"wrappedInt64\": {\"value\": 1}}", "field \"wrappedInt64\": expected an integer, got an object");

        assert_int_equal(pbjson_decode(ts, too_late, sizeof(too_late), 0, &json, &error), -EBADMSG);
        assert_string_equal(error, "timestamp out of range (seconds 253402300800, nanos 0)");
        free(error);
}

static void test_ignore_unknown(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = pool_from(0);
        const ProtobufCMessageDescriptor *e = pbdyn_pool_find_message(pool, "plexus.test.Everything");
        _cleanup_(freep) uint8_t *bytes = NULL;
        size_t n;

        assert_int_equal(pbjson_encode(e, "{\"nope\": 1, \"mode\": 1}", PBJSON_IGNORE_UNKNOWN, &bytes, &n, NULL), 0);
        assert_int_equal(n, 2);
}

static void test_decode_errors(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = pool_from(0);
        const ProtobufCMessageDescriptor *s = pbdyn_pool_find_message(pool, "plexus.test.Scalars");
        const ProtobufCMessageDescriptor *t = pbdyn_pool_find_message(pool, "plexus.test.Tree");
        const uint8_t bad_utf8[] = { 0x72, 0x02, 0xc3, 0x28 };         /* text = "\xc3(" */
        const uint8_t truncated[] = { 0x72, 0x05, 'a' };
        const uint8_t wrong_wire_type[] = { 0x0d, 1, 2, 3, 4 };         /* i32 as fixed32 */
        const uint8_t group[] = { 0x0b, 0x0c };
        _cleanup_(freep) uint8_t *deep = NULL, *wide = NULL;
        char *json = NULL, *error = NULL;
        size_t n;

        assert_int_equal(pbjson_decode(s, bad_utf8, sizeof(bad_utf8), 0, &json, &error), -EBADMSG);
        assert_string_equal(error, "field \"text\": string is not valid UTF-8");
        free(error);
        assert_int_equal(pbjson_decode(s, truncated, sizeof(truncated), 0, &json, &error), -EBADMSG);
        assert_string_equal(error, "truncated length-delimited field in plexus.test.Scalars");
        free(error);
        assert_int_equal(pbjson_decode(s, wrong_wire_type, sizeof(wrong_wire_type), 0, &json, &error), -EBADMSG);
        assert_string_equal(error, "not a valid plexus.test.Scalars message");
        free(error);
        assert_int_equal(pbjson_decode(s, group, sizeof(group), 0, &json, &error), -EBADMSG);
        free(error);

        /* Tree.parent nested 1000 deep: refused before protobuf-c recurses */
        deep = malloc(5000);
        n = 0;
        for (unsigned i = 0; i < 1000; i++) {
                /* built from the inside out: tag 0x1a, then a 2-byte varint length */
                size_t len = n;

                memmove(deep + 3, deep, len);
                deep[0] = 0x1a;
                deep[1] = (uint8_t) (0x80 | (len & 0x7f));
                deep[2] = (uint8_t) (len >> 7);
                n += 3;
        }
        assert_int_equal(pbjson_decode(t, deep, n, 0, &json, &error), -EBADMSG);
        assert_string_equal(error, "messages nested deeper than 100");
        free(error);
        /* 100 deep is fine */
        assert_int_equal(pbjson_decode(t, deep + n - 300, 300, 0, &json, &error), 0);
        free(json);

        /* many empty sub-messages are cheap on the wire, not in memory: a budget */
        n = 64u * 1024 * 1024;
        wide = malloc(n);
        for (size_t i = 0; i < n; i += 2) {
                wide[i] = 0x12;
                wide[i + 1] = 0;
        }
        assert_int_equal(pbdyn_check_wire(t, wide, n, NULL, 0), -EBADMSG);
}

/* A set of one file with one message holding @n fields, for hostile variants. */
static int add_one_message(PbdynPool *pool, const char *syntax, Google__Protobuf__FieldDescriptorProto **fields,
                           size_t n, const char *dependency_message) {
        Google__Protobuf__DescriptorProto msg = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
        Google__Protobuf__DescriptorProto msg2 = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
        Google__Protobuf__DescriptorProto *msgs[] = { &msg, &msg2 };
        Google__Protobuf__FileDescriptorProto file = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_PROTO__INIT;
        Google__Protobuf__FileDescriptorProto *files[] = { &file };
        Google__Protobuf__FileDescriptorSet set = GOOGLE__PROTOBUF__FILE_DESCRIPTOR_SET__INIT;
        _cleanup_(freep) uint8_t *buf = NULL;
        size_t size;

        msg.name = "M";
        msg.field = fields;
        msg.n_field = n;
        msg2.name = (char *) (dependency_message ?: "Other");
        file.name = "hostile.proto";
        file.package = "h";
        file.syntax = (char *) syntax;
        file.message_type = msgs;
        file.n_message_type = 2;
        set.file = files;
        set.n_file = 1;
        size = google__protobuf__file_descriptor_set__get_packed_size(&set);
        buf = malloc(size);
        google__protobuf__file_descriptor_set__pack(&set, buf);
        return pbdyn_pool_add_set(pool, buf, size);
}

static Google__Protobuf__FieldDescriptorProto field(const char *name, int number,
                                                    Google__Protobuf__FieldDescriptorProto__Type type,
                                                    const char *type_name) {
        Google__Protobuf__FieldDescriptorProto f = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__INIT;

        f.name = (char *) name;
        f.has_number = 1;
        f.number = number;
        f.has_type = 1;
        f.type = type;
        f.type_name = (char *) type_name;
        return f;
}

static void assert_hostile(Google__Protobuf__FieldDescriptorProto *fields, size_t n, const char *dup_name,
                           const char *expected) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = NULL;
        Google__Protobuf__FieldDescriptorProto *p[8];

        assert_true(n <= ELEMENTSOF(p));
        for (size_t i = 0; i < n; i++)
                p[i] = &fields[i];
        assert_int_equal(pbdyn_pool_new(&pool), 0);
        assert_int_equal(add_one_message(pool, "proto3", p, n, dup_name), -EBADMSG);
        if (!strstr(pbdyn_pool_error(pool), expected))
                fail_msg("error \"%s\", expected \"%s\"", pbdyn_pool_error(pool), expected);
        /* a failed set leaves nothing behind */
        assert_null(pbdyn_pool_find_message(pool, "h.M"));
}

static void test_hostile_sets(void **state) {
        const Google__Protobuf__FieldDescriptorProto__Type INT32 = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32;
        const Google__Protobuf__FieldDescriptorProto__Type MSG = GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE;
        Google__Protobuf__FieldDescriptorProto f[3];

        f[0] = field("a", 1, MSG, ".h.Missing");
        assert_hostile(f, 1, NULL, "field \"h.M.a\": unknown message type \".h.Missing\"");
        f[0] = field("a", 1, MSG, "h.Other");
        assert_hostile(f, 1, NULL, "is not fully qualified");
        f[0] = field("a", 1, GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_ENUM, ".h.Other");
        assert_hostile(f, 1, NULL, "unknown enum type");
        f[0] = field("a", 536870912, INT32, NULL);
        assert_hostile(f, 1, NULL, "field \"h.M.a\": invalid field number");
        f[0] = field("a", 0, INT32, NULL);
        assert_hostile(f, 1, NULL, "invalid field number");
        f[0] = field("a", -5, INT32, NULL);
        assert_hostile(f, 1, NULL, "invalid field number");
        f[0] = field("a", 1, INT32, NULL);
        f[1] = field("b", 1, INT32, NULL);
        assert_hostile(f, 2, NULL, "message \"h.M\": field number 1 used twice");
        f[1] = field("a", 2, INT32, NULL);
        assert_hostile(f, 2, NULL, "message \"h.M\": field \"a\" declared twice");
        f[1] = field("b c", 2, INT32, NULL);
        assert_hostile(f, 2, NULL, "invalid name");
        f[0] = field("a", 1, GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP, ".h.Other");
        assert_hostile(f, 1, NULL, "groups are not supported");
        f[0] = field("a", 1, 99, NULL);
        assert_hostile(f, 1, NULL, "unsupported type");
        f[0] = field("a", 1, INT32, NULL);
        f[0].has_oneof_index = 1;
        f[0].oneof_index = 3;
        assert_hostile(f, 1, NULL, "invalid oneof index");
        f[0] = field("a", 1, INT32, NULL);
        f[0].default_value = "5";
        assert_hostile(f, 1, NULL, "default values are not allowed in proto3");
        f[0] = field("a", 1, INT32, NULL);
        assert_hostile(f, 1, "M", "type \"h.M\" defined twice");
}

static void test_hostile_defaults(void **state) {
        static const struct {
                Google__Protobuf__FieldDescriptorProto__Type type;
                const char *value;
        } bad[] = {
                { GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32, "2147483648" },
                { GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT32, "-1" },
                { GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT64, "-1" },
                { GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT64, "1x" },
                { GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BOOL, "yes" },
                { GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_DOUBLE, "" },
                { GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BYTES, "\\" },
                { GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BYTES, "\\777" },
                { GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BYTES, "\\xg" },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(pbdyn_pool_freep) PbdynPool *pool = NULL;
                Google__Protobuf__FieldDescriptorProto f = field("a", 1, bad[i].type, NULL);
                Google__Protobuf__FieldDescriptorProto *p = &f;

                f.default_value = (char *) bad[i].value;
                assert_int_equal(pbdyn_pool_new(&pool), 0);
                assert_int_equal(add_one_message(pool, "proto2", &p, 1, NULL), -EBADMSG);
                assert_non_null(strstr(pbdyn_pool_error(pool), "invalid default value"));
        }
}

/* Every prefix and many corruptions of a real set: errors, never a crash (ASan checks). */
static void test_truncated_and_corrupt_sets(void **state) {
        Blob b = read_file(set_paths[0]);
        uint32_t seed = 12;

        for (size_t n = 0; n < b.size; n++) {
                _cleanup_(pbdyn_pool_freep) PbdynPool *pool = NULL;
                int r;

                assert_int_equal(pbdyn_pool_new(&pool), 0);
                r = pbdyn_pool_add_set(pool, b.data, n);
                if (r < 0) {
                        assert_int_equal(r, -EBADMSG);
                        assert_true(pbdyn_pool_error(pool)[0] != 0);
                }
        }
        for (unsigned i = 0; i < 3000; i++) {
                _cleanup_(pbdyn_pool_freep) PbdynPool *pool = NULL;
                _cleanup_(freep) uint8_t *copy = malloc(b.size);
                const ProtobufCMessageDescriptor *d;

                memcpy(copy, b.data, b.size);
                for (unsigned k = 0; k < 1 + i % 4; k++) {
                        seed = seed * 1103515245 + 12345;
                        copy[(seed >> 8) % b.size] ^= (uint8_t) (1u << (seed >> 28) % 8);
                }
                assert_int_equal(pbdyn_pool_new(&pool), 0);
                if (pbdyn_pool_add_set(pool, copy, b.size) < 0)
                        continue;
                /* what was accepted must work */
                d = pbdyn_pool_find_message(pool, "plexus.test.Everything");
                if (d) {
                        _cleanup_(freep) uint8_t *bytes = NULL;
                        _cleanup_(freep) char *json = NULL, *error = NULL;
                        size_t n;

                        if (pbjson_encode(d, "{\"mode\": 1, \"packedInts\": [1], \"counts\": {\"a\": 1}}", 0,
                                          &bytes, &n, &error) == 0)
                                (void) pbjson_decode(d, bytes, n, 0, &json, NULL);
                }
        }
        free(b.data);
}

static void test_self_recursive(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = pool_from(0);
        const ProtobufCMessageDescriptor *t = pbdyn_pool_find_message(pool, "plexus.test.Tree");

        assert_non_null(t);
        assert_ptr_equal(t->fields[1].descriptor, t);
        assert_round_trip(t, "{\"name\": \"a\", \"children\": [{\"name\": \"b\", \"parent\": {\"name\": \"c\"}}]}",
                          "{\"name\":\"a\",\"children\":[{\"name\":\"b\",\"parent\":{\"name\":\"c\"}}]}", 0);
}

static void test_json_depth(void **state) {
        _cleanup_(pbdyn_pool_freep) PbdynPool *pool = pool_from(0);
        const ProtobufCMessageDescriptor *t = pbdyn_pool_find_message(pool, "plexus.test.Tree");
        char json[4096] = "";
        size_t k = 0;

        for (unsigned i = 0; i < 150; i++)
                k += (size_t) snprintf(json + k, sizeof(json) - k, "{\"parent\":");
        k += (size_t) snprintf(json + k, sizeof(json) - k, "{}");
        for (unsigned i = 0; i < 150; i++)
                json[k++] = '}';
        json[k] = 0;
        assert_encode_error(t, json, "nested deeper than 100");
}

int main(int argc, char **argv) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pool_lookup),
                cmocka_unit_test(test_pool_dedupe),
                cmocka_unit_test(test_layout_like_protoc_c),
                cmocka_unit_test(test_dynamic_unpacks_generated),
                cmocka_unit_test(test_generated_stats),
                cmocka_unit_test(test_round_trips),
                cmocka_unit_test(test_proto2),
                cmocka_unit_test(test_json_errors),
                cmocka_unit_test(test_well_known_types),
                cmocka_unit_test(test_ignore_unknown),
                cmocka_unit_test(test_decode_errors),
                cmocka_unit_test(test_hostile_sets),
                cmocka_unit_test(test_hostile_defaults),
                cmocka_unit_test(test_truncated_and_corrupt_sets),
                cmocka_unit_test(test_self_recursive),
                cmocka_unit_test(test_json_depth),
        };

        if (argc != 5) {
                fprintf(stderr, "usage: %s TEST-SET PROTO2-SET DESCRIPTOR-SET PLEXUS-SET\n", argv[0]);
                return 2;
        }
        for (int i = 0; i < 4; i++)
                set_paths[i] = argv[i + 1];
        return cmocka_run_group_tests(tests, NULL, NULL);
}
