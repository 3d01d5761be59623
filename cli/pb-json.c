/*
 * Protobuf messages to and from json-c objects, after proto3's canonical
 * JSON mapping (python's google.protobuf.json_format is the reference the
 * tests compare with).
 *
 * Both directions walk a message along its descriptor only, so generated
 * and pb-dynamic.c descriptors are treated alike. What protobuf-c's
 * descriptors do not say is derived as protoc derives it: the JSON name of
 * a field is its name in lowerCamelCase, and a map field is a repeated
 * field of a nested message named after the field plus "Entry" with a
 * `key` = 1 and a `value` = 2.
 *
 * Recursion follows message nesting, which is bounded by PBDYN_DEPTH_MAX on
 * both sides: pbdyn_check_wire() bounds it in bytes before protobuf-c
 * unpacks them, and the JSON parser's depth and a counter bound it on
 * input. A message built from JSON stays freeable by
 * protobuf_c_message_free_unpacked() at every step, so errors simply free
 * the whole message.
 */

#include <assert.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pb-dynamic.h"
#include "pb-json.h"
#include "utf8.h"
#include "util.h"

#define PATH_MAX_LEN 512

typedef struct Ctx {
        unsigned flags;
        char path[PATH_MAX_LEN];
        size_t path_len;
        char *error;
        bool oom;
} Ctx;

_printf_(2, 3)
static int ctx_fail(Ctx *c, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        free(c->error);
        c->error = NULL;
        if (c->path_len > 0) {
                if (asprintf(&c->error, "field \"%s\": %s", c->path, msg) < 0)
                        c->error = NULL;
        } else {
                c->error = strdup(msg);
        }
        return -EINVAL;
}

static size_t path_push(Ctx *c, const char *fmt, ...) _printf_(2, 3);
static size_t path_push(Ctx *c, const char *fmt, ...) {
        size_t old = c->path_len;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(c->path + old, sizeof(c->path) - old, fmt, ap);
        va_end(ap);
        if (n < 0)
                n = 0;
        c->path_len = MIN(old + (size_t) n, sizeof(c->path) - 1);
        return old;
}

static void path_pop(Ctx *c, size_t old) {
        c->path_len = old;
        c->path[old] = 0;
}

static size_t path_push_field(Ctx *c, const char *name) {
        return c->path_len > 0 ? path_push(c, ".%s", name) : path_push(c, "%s", name);
}

static void *field_ptr(const ProtobufCMessage *m, unsigned offset) {
        return (char *) m + offset;
}

/* protoc's ToJsonName(): drop underscores, capitalize what follows them. */
static void json_name(const char *name, char *buf, size_t size) {
        bool upper = false;
        size_t k = 0;

        for (; *name && k + 1 < size; name++) {
                if (*name == '_') {
                        upper = true;
                        continue;
                }
                buf[k++] = upper && *name >= 'a' && *name <= 'z' ? (char) (*name - 'a' + 'A') : *name;
                upper = false;
        }
        buf[k] = 0;
}

static const char *field_name(const ProtobufCFieldDescriptor *f) {
        /* protoc-c leaves names out under optimize_for = CODE_SIZE */
        return f->name ?: "?";
}

static bool is_map_field(const ProtobufCFieldDescriptor *f) {
        const ProtobufCMessageDescriptor *e;
        char want[300];
        bool upper = true;
        size_t k = 0;

        if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE || !f->name)
                return false;
        e = f->descriptor;
        if (!e || e->n_fields != 2 || e->fields[0].id != 1 || e->fields[1].id != 2 || !e->fields[0].name ||
            !e->fields[1].name || strcmp(e->fields[0].name, "key") != 0 || strcmp(e->fields[1].name, "value") != 0 ||
            e->fields[0].label == PROTOBUF_C_LABEL_REPEATED || e->fields[1].label == PROTOBUF_C_LABEL_REPEATED)
                return false;
        /* keys are integers, bools or strings (protoc refuses the rest) */
        switch (e->fields[0].type) {
        case PROTOBUF_C_TYPE_FLOAT:
        case PROTOBUF_C_TYPE_DOUBLE:
        case PROTOBUF_C_TYPE_BYTES:
        case PROTOBUF_C_TYPE_ENUM:
        case PROTOBUF_C_TYPE_MESSAGE:
                return false;
        default:
                break;
        }
        /* protoc names the entry after the field: my_map -> MyMapEntry */
        for (const char *s = f->name; *s && k + 7 < sizeof(want); s++) {
                if (*s == '_') {
                        upper = true;
                        continue;
                }
                want[k++] = upper && *s >= 'a' && *s <= 'z' ? (char) (*s - 'a' + 'A') : *s;
                upper = false;
        }
        strcpy(want + k, "Entry");
        return e->short_name && strcmp(e->short_name, want) == 0;
}

static const char base64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64_encode(const uint8_t *d, size_t n) {
        char *s = malloc((n + 2) / 3 * 4 + 1), *o = s;

        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) d[i] << 16 | (i + 1 < n ? (uint32_t) d[i + 1] << 8 : 0) |
                             (i + 2 < n ? d[i + 2] : 0);

                *o++ = base64_chars[v >> 18 & 63];
                *o++ = base64_chars[v >> 12 & 63];
                *o++ = i + 1 < n ? base64_chars[v >> 6 & 63] : '=';
                *o++ = i + 2 < n ? base64_chars[v & 63] : '=';
        }
        *o = 0;
        return s;
}

static int base64_value(char ch) {
        if (ch >= 'A' && ch <= 'Z')
                return ch - 'A';
        if (ch >= 'a' && ch <= 'z')
                return ch - 'a' + 26;
        if (ch >= '0' && ch <= '9')
                return ch - '0' + 52;
        if (ch == '+' || ch == '-')
                return 62;
        if (ch == '/' || ch == '_')
                return 63;
        return -1;
}

/* Standard or URL-safe alphabet, padding optional (RFC 4648 §4, §5). */
static int base64_decode(const char *s, size_t n, uint8_t **ret, size_t *ret_len) {
        uint8_t *d;
        uint32_t acc = 0;
        size_t k = 0, bits = 0;

        while (n > 0 && s[n - 1] == '=')
                n--;
        if (n % 4 == 1)
                return -EINVAL;
        d = malloc(n / 4 * 3 + 3);
        if (!d)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int v = base64_value(s[i]);

                if (v < 0) {
                        free(d);
                        return -EINVAL;
                }
                acc = acc << 6 | (uint32_t) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        d[k++] = (uint8_t) (acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        *ret = d;
        *ret_len = k;
        return 0;
}

/* The shortest decimal that reads back as the same float or double. */
static json_object *new_double(double v, bool is_float) {
        char buf[64];

        if (isnan(v))
                return json_object_new_string("NaN");
        if (isinf(v))
                return json_object_new_string(v > 0 ? "Infinity" : "-Infinity");
        /* "-0" would read back as the integer 0 (python's json does) */
        if (v == 0 && signbit(v))
                return json_object_new_double_s(v, "-0.0");
        for (int p = 1; p <= 17; p++) {
                snprintf(buf, sizeof(buf), "%.*g", p, v);
                if (is_float ? strtof(buf, NULL) == (float) v : strtod(buf, NULL) == v)
                        break;
        }
        /* The shortest digits of FLT_MAX read as a double above FLT_MAX, which python
         * rejects for a float field; all digits of the value are within. */
        if (is_float && fabs(strtod(buf, NULL)) > FLT_MAX)
                snprintf(buf, sizeof(buf), "%.17g", v);
        return json_object_new_double_s(v, buf);
}

static int scalar_to_json(Ctx *c, const ProtobufCFieldDescriptor *f, const void *p, unsigned depth,
                          json_object **ret);

static int message_to_json(Ctx *c, const ProtobufCMessage *m, unsigned depth, json_object **ret);

static bool value_is_default(const ProtobufCFieldDescriptor *f, const void *p) {
        switch (f->type) {
        case PROTOBUF_C_TYPE_FLOAT:
                return *(const float *) p == 0;
        case PROTOBUF_C_TYPE_DOUBLE:
                return *(const double *) p == 0;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                return *(const uint64_t *) p == 0;
        case PROTOBUF_C_TYPE_BOOL:
                return !*(const protobuf_c_boolean *) p;
        case PROTOBUF_C_TYPE_STRING:
                return !*(char *const *) p || !**(char *const *) p;
        case PROTOBUF_C_TYPE_BYTES:
                return ((const ProtobufCBinaryData *) p)->len == 0;
        case PROTOBUF_C_TYPE_MESSAGE:
                return !*(ProtobufCMessage *const *) p;
        default:
                return *(const uint32_t *) p == 0;
        }
}

static int scalar_to_json(Ctx *c, const ProtobufCFieldDescriptor *f, const void *p, unsigned depth,
                          json_object **ret) {
        json_object *j = NULL;
        char buf[32];

        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
                j = json_object_new_int(*(const int32_t *) p);
                break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                j = json_object_new_int64(*(const uint32_t *) p);
                break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
                snprintf(buf, sizeof(buf), "%" PRId64, *(const int64_t *) p);
                j = json_object_new_string(buf);
                break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                snprintf(buf, sizeof(buf), "%" PRIu64, *(const uint64_t *) p);
                j = json_object_new_string(buf);
                break;
        case PROTOBUF_C_TYPE_FLOAT:
                j = new_double(*(const float *) p, true);
                break;
        case PROTOBUF_C_TYPE_DOUBLE:
                j = new_double(*(const double *) p, false);
                break;
        case PROTOBUF_C_TYPE_BOOL:
                j = json_object_new_boolean(*(const protobuf_c_boolean *) p ? 1 : 0);
                break;
        case PROTOBUF_C_TYPE_ENUM: {
                int32_t v = *(const int32_t *) p;
                const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);

                /* an open enum may carry numbers its descriptor does not name */
                j = ev && ev->name ? json_object_new_string(ev->name) : json_object_new_int(v);
                break;
        }
        case PROTOBUF_C_TYPE_STRING: {
                const char *s = *(char *const *) p ?: "";

                if (!utf8_is_valid(s, strlen(s))) {
                        ctx_fail(c, "string is not valid UTF-8");
                        return -EBADMSG;
                }
                j = json_object_new_string(s);
                break;
        }
        case PROTOBUF_C_TYPE_BYTES: {
                const ProtobufCBinaryData *b = p;
                _cleanup_(freep) char *s = base64_encode(b->data, b->len);

                if (!s)
                        return -ENOMEM;
                j = json_object_new_string(s);
                break;
        }
        case PROTOBUF_C_TYPE_MESSAGE: {
                const ProtobufCMessage *m = *(ProtobufCMessage *const *) p;

                if (!m) {
                        j = json_object_new_object();
                        break;
                }
                return message_to_json(c, m, depth + 1, ret);
        }
        }
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
}

static int map_key_string(Ctx *c, const ProtobufCFieldDescriptor *kf, const void *p, char *buf, size_t size,
                          const char **ret) {
        switch (kf->type) {
        case PROTOBUF_C_TYPE_STRING: {
                const char *s = *(char *const *) p ?: "";

                if (!utf8_is_valid(s, strlen(s))) {
                        ctx_fail(c, "map key is not valid UTF-8");
                        return -EBADMSG;
                }
                *ret = s;
                return 0;
        }
        case PROTOBUF_C_TYPE_BOOL:
                *ret = *(const protobuf_c_boolean *) p ? "true" : "false";
                return 0;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
                snprintf(buf, size, "%" PRId64, *(const int64_t *) p);
                break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                snprintf(buf, size, "%" PRIu64, *(const uint64_t *) p);
                break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                snprintf(buf, size, "%" PRIu32, *(const uint32_t *) p);
                break;
        default:
                snprintf(buf, size, "%" PRId32, *(const int32_t *) p);
                break;
        }
        *ret = buf;
        return 0;
}

static int repeated_to_json(Ctx *c, const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m,
                            unsigned depth, json_object **ret) {
        size_t n = *(const size_t *) field_ptr(m, f->quantifier_offset);
        const char *arr = *(char *const *) field_ptr(m, f->offset);
        bool map = is_map_field(f);
        json_object *j;
        int r = 0;

        j = map ? json_object_new_object() : json_object_new_array_ext((int) MIN(n, (size_t) INT_MAX));
        if (!j)
                return -ENOMEM;
        for (size_t i = 0; i < n && arr; i++) {
                const void *p = arr + i * pbdyn_type_size(f->type);
                size_t old = path_push(c, "[%zu]", i);
                json_object *v = NULL;

                if (map) {
                        const ProtobufCMessage *e = *(ProtobufCMessage *const *) p;
                        const ProtobufCMessageDescriptor *ed = f->descriptor;
                        char buf[32];
                        const char *key;

                        if (!e) {
                                path_pop(c, old);
                                continue;
                        }
                        r = map_key_string(c, &ed->fields[0], field_ptr(e, ed->fields[0].offset), buf,
                                           sizeof(buf), &key);
                        if (r >= 0) {
                                path_pop(c, old);
                                old = path_push(c, "[\"%s\"]", key);
                                r = scalar_to_json(c, &ed->fields[1], field_ptr(e, ed->fields[1].offset), depth,
                                                   &v);
                        }
                        if (r >= 0 && json_object_object_add(j, key, v) < 0) {
                                json_object_put(v);
                                r = -ENOMEM;
                        }
                } else {
                        r = scalar_to_json(c, f, p, depth, &v);
                        if (r >= 0 && json_object_array_add(j, v) < 0) {
                                json_object_put(v);
                                r = -ENOMEM;
                        }
                }
                path_pop(c, old);
                if (r < 0)
                        break;
        }
        if (r < 0) {
                json_object_put(j);
                return r;
        }
        *ret = j;
        return 0;
}

/*
 * Well-known types with a JSON form of their own: Timestamp (RFC 3339 in
 * UTC), Duration ("1.5s") and the wrappers (the wrapped value itself).
 * Recognized by full name and field layout, so a message that only shares
 * the name is left alone.
 */
typedef enum WktKind {
        WKT_NONE,
        WKT_TIMESTAMP,
        WKT_DURATION,
        WKT_WRAPPER,
} WktKind;

#define TIMESTAMP_MIN (-62135596800LL)         /* 0001-01-01T00:00:00Z */
#define TIMESTAMP_MAX 253402300799LL            /* 9999-12-31T23:59:59Z */
#define DURATION_MAX 315576000000LL             /* 10000 years */

static int json_to_value(Ctx *c, const ProtobufCFieldDescriptor *f, json_object *j, unsigned depth, void *p);
static const char *json_type_text(json_object *j);

static WktKind wkt_kind(const ProtobufCMessageDescriptor *d) {
        static const char *const wrappers[] = {
                "DoubleValue", "FloatValue", "Int64Value", "UInt64Value", "Int32Value",
                "UInt32Value", "BoolValue", "StringValue", "BytesValue",
        };
        const ProtobufCFieldDescriptor *f1, *f2;
        const char *n;

        if (!d->name || strncmp(d->name, "google.protobuf.", 16) != 0)
                return WKT_NONE;
        n = d->name + 16;
        f1 = protobuf_c_message_descriptor_get_field(d, 1);
        f2 = protobuf_c_message_descriptor_get_field(d, 2);
        if ((strcmp(n, "Timestamp") == 0 || strcmp(n, "Duration") == 0) && d->n_fields == 2 && f1 && f2 &&
            f1->type == PROTOBUF_C_TYPE_INT64 && f1->label != PROTOBUF_C_LABEL_REPEATED &&
            f2->type == PROTOBUF_C_TYPE_INT32 && f2->label != PROTOBUF_C_LABEL_REPEATED)
                return n[0] == 'T' ? WKT_TIMESTAMP : WKT_DURATION;
        if (d->n_fields != 1 || !f1 || f1->label == PROTOBUF_C_LABEL_REPEATED ||
            f1->type == PROTOBUF_C_TYPE_MESSAGE)
                return WKT_NONE;
        for (size_t i = 0; i < ELEMENTSOF(wrappers); i++)
                if (strcmp(n, wrappers[i]) == 0)
                        return WKT_WRAPPER;
        return WKT_NONE;
}

/* Days since 1970-01-01 of a date in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
        int64_t era;
        unsigned yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = (unsigned) (y - era * 400);
        doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int64_t) doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *ret_y, unsigned *ret_m, unsigned *ret_d) {
        int64_t era, y;
        unsigned doe, yoe, doy, mp;

        z += 719468;
        era = (z >= 0 ? z : z - 146096) / 146097;
        doe = (unsigned) (z - era * 146097);
        yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        y = (int64_t) yoe + era * 400;
        doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        mp = (5 * doy + 2) / 153;
        *ret_d = doy - (153 * mp + 2) / 5 + 1;
        *ret_m = mp < 10 ? mp + 3 : mp - 9;
        *ret_y = y + (*ret_m <= 2);
}

/* 0, 3, 6 or 9 digits after the point, as python writes them. */
static void format_nanos(char *buf, size_t size, int32_t nanos) {
        if (nanos == 0)
                buf[0] = 0;
        else if (nanos % 1000000 == 0)
                snprintf(buf, size, ".%03d", nanos / 1000000);
        else if (nanos % 1000 == 0)
                snprintf(buf, size, ".%06d", nanos / 1000);
        else
                snprintf(buf, size, ".%09d", nanos);
}

static int wkt_to_json(Ctx *c, const ProtobufCMessage *m, WktKind kind, unsigned depth, json_object **ret) {
        const ProtobufCMessageDescriptor *d = m->descriptor;
        const ProtobufCFieldDescriptor *f1 = protobuf_c_message_descriptor_get_field(d, 1);
        char buf[64], frac[16];
        json_object *j;

        if (kind == WKT_WRAPPER)
                return scalar_to_json(c, f1, field_ptr(m, f1->offset), depth, ret);

        int64_t s = *(const int64_t *) field_ptr(m, f1->offset);
        int32_t n = *(const int32_t *) field_ptr(m, protobuf_c_message_descriptor_get_field(d, 2)->offset);

        if (kind == WKT_TIMESTAMP) {
                int64_t days = (s >= 0 ? s : s - 86399) / 86400, y;
                int64_t secs = s - days * 86400;
                unsigned mo, dd;

                if (s < TIMESTAMP_MIN || s > TIMESTAMP_MAX || n < 0 || n > 999999999)
                        return ctx_fail(c, "timestamp out of range (seconds %" PRId64 ", nanos %" PRId32 ")", s, n);
                civil_from_days(days, &y, &mo, &dd);
                format_nanos(frac, sizeof(frac), n);
                snprintf(buf, sizeof(buf), "%04" PRId64 "-%02u-%02uT%02u:%02u:%02u%sZ", y, mo, dd,
                         (unsigned) (secs / 3600), (unsigned) (secs / 60 % 60), (unsigned) (secs % 60), frac);
        } else {
                if (s < -DURATION_MAX || s > DURATION_MAX || n < -999999999 || n > 999999999 ||
                    (s > 0 && n < 0) || (s < 0 && n > 0))
                        return ctx_fail(c, "duration out of range (seconds %" PRId64 ", nanos %" PRId32 ")", s, n);
                format_nanos(frac, sizeof(frac), n < 0 ? -n : n);
                snprintf(buf, sizeof(buf), "%s%" PRId64 "%ss", s < 0 || n < 0 ? "-" : "", s < 0 ? -s : s, frac);
        }
        j = json_object_new_string(buf);
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
}

/* Up to 9 digits after a point, as nanoseconds; advances *p. */
static int parse_fraction(const char **p, int32_t *ret) {
        const char *s = *p;
        int32_t v = 0;
        unsigned k = 0;

        if (*s != '.') {
                *ret = 0;
                return 0;
        }
        for (s++; *s >= '0' && *s <= '9'; s++, k++) {
                if (k == 9)
                        return -EINVAL;
                v = v * 10 + (*s - '0');
        }
        if (k == 0)
                return -EINVAL;
        for (; k < 9; k++)
                v *= 10;
        *p = s;
        *ret = v;
        return 0;
}

static bool parse_digits(const char **p, unsigned n, unsigned *ret) {
        unsigned v = 0;

        for (unsigned i = 0; i < n; i++) {
                if ((*p)[i] < '0' || (*p)[i] > '9')
                        return false;
                v = v * 10 + (unsigned) ((*p)[i] - '0');
        }
        *p += n;
        *ret = v;
        return true;
}

static int parse_timestamp(const char *text, int64_t *ret_s, int32_t *ret_n) {
        static const unsigned mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        const char *p = text;
        unsigned y, mo, d, h, mi, se, oh = 0, om = 0;
        int64_t s;
        int sign = 0;

        if (!parse_digits(&p, 4, &y) || *p++ != '-' || !parse_digits(&p, 2, &mo) || *p++ != '-' ||
            !parse_digits(&p, 2, &d) || (*p != 'T' && *p != 't') || !(++p, parse_digits(&p, 2, &h)) ||
            *p++ != ':' || !parse_digits(&p, 2, &mi) || *p++ != ':' || !parse_digits(&p, 2, &se))
                return -EINVAL;
        if (parse_fraction(&p, ret_n) < 0)
                return -EINVAL;
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                sign = *p++ == '+' ? 1 : -1;
                if (!parse_digits(&p, 2, &oh) || *p++ != ':' || !parse_digits(&p, 2, &om) || oh > 23 || om > 59)
                        return -EINVAL;
        } else
                return -EINVAL;
        if (*p || y < 1 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 59 ||
            (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))))
                return -EINVAL;
        s = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - sign * (int64_t) (oh * 3600 + om * 60);
        if (s < TIMESTAMP_MIN || s > TIMESTAMP_MAX)
                return -ERANGE;
        *ret_s = s;
        return 0;
}

static int parse_duration(const char *text, int64_t *ret_s, int32_t *ret_n) {
        const char *p = text;
        bool negative = *p == '-';
        int64_t s = 0;
        int32_t n;

        if (negative)
                p++;
        if (*p < '0' || *p > '9')
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
                s = s * 10 + (*p - '0');
                if (s > DURATION_MAX)
                        return -ERANGE;
        }
        if (parse_fraction(&p, &n) < 0 || *p++ != 's' || *p)
                return -EINVAL;
        *ret_s = negative ? -s : s;
        *ret_n = negative ? -n : n;
        return 0;
}

static int json_to_wkt(Ctx *c, ProtobufCMessage *m, WktKind kind, json_object *j, unsigned depth) {
        const ProtobufCMessageDescriptor *d = m->descriptor;
        const ProtobufCFieldDescriptor *f1 = protobuf_c_message_descriptor_get_field(d, 1), *f2;
        const char *text;
        int64_t s = 0;
        int32_t n = 0;
        int r;

        if (kind == WKT_WRAPPER) {
                if (f1->label == PROTOBUF_C_LABEL_OPTIONAL && f1->type != PROTOBUF_C_TYPE_STRING)
                        *(protobuf_c_boolean *) field_ptr(m, f1->quantifier_offset) = 1;
                return json_to_value(c, f1, j, depth, field_ptr(m, f1->offset));
        }
        if (!json_object_is_type(j, json_type_string))
                return ctx_fail(c, "expected a %s string, got %s",
                                kind == WKT_TIMESTAMP ? "timestamp" : "duration", json_type_text(j));
        text = json_object_get_string(j);
        r = kind == WKT_TIMESTAMP ? parse_timestamp(text, &s, &n) : parse_duration(text, &s, &n);
        if (r == -ERANGE)
                return ctx_fail(c, "%s \"%s\" is out of range", kind == WKT_TIMESTAMP ? "timestamp" : "duration",
                                text);
        if (r < 0)
                return ctx_fail(c, kind == WKT_TIMESTAMP
                                ? "expected an RFC 3339 timestamp like \"2024-05-01T12:00:00Z\", got \"%s\""
                                : "expected a duration like \"1.5s\", got \"%s\"", text);
        f2 = protobuf_c_message_descriptor_get_field(d, 2);
        *(int64_t *) field_ptr(m, f1->offset) = s;
        *(int32_t *) field_ptr(m, f2->offset) = n;
        /* proto2 copies of these types would have presence flags */
        if (f1->label == PROTOBUF_C_LABEL_OPTIONAL)
                *(protobuf_c_boolean *) field_ptr(m, f1->quantifier_offset) = 1;
        if (f2->label == PROTOBUF_C_LABEL_OPTIONAL)
                *(protobuf_c_boolean *) field_ptr(m, f2->quantifier_offset) = 1;
        return 0;
}

static int message_to_json(Ctx *c, const ProtobufCMessage *m, unsigned depth, json_object **ret) {
        const ProtobufCMessageDescriptor *d = m->descriptor;
        json_object *j;

        WktKind kind = wkt_kind(d);

        if (depth > PBDYN_DEPTH_MAX)
                return ctx_fail(c, "messages nested deeper than %u", PBDYN_DEPTH_MAX);
        if (kind != WKT_NONE)
                return wkt_to_json(c, m, kind, depth, ret);
        j = json_object_new_object();
        if (!j)
                return -ENOMEM;
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                const void *p = field_ptr(m, f->offset);
                bool present;
                char key[256];
                json_object *v = NULL;
                size_t old;
                int r;

                if (f->label == PROTOBUF_C_LABEL_REPEATED)
                        present = *(const size_t *) field_ptr(m, f->quantifier_offset) > 0 ||
                                  (c->flags & PBJSON_INCLUDE_DEFAULTS);
                else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                        present = *(const uint32_t *) field_ptr(m, f->quantifier_offset) == f->id;
                else if (f->label == PROTOBUF_C_LABEL_REQUIRED)
                        present = true;
                else if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
                         (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE))
                        present = *(void *const *) p && *(void *const *) p != f->default_value;
                else if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
                        present = *(const protobuf_c_boolean *) field_ptr(m, f->quantifier_offset);
                else if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                        present = *(void *const *) p;
                else
                        present = !value_is_default(f, p) || (c->flags & PBJSON_INCLUDE_DEFAULTS);
                if (!present)
                        continue;

                if (c->flags & PBJSON_PROTO_NAMES)
                        snprintf(key, sizeof(key), "%s", field_name(f));
                else
                        json_name(field_name(f), key, sizeof(key));
                old = path_push_field(c, key);
                if (f->label == PROTOBUF_C_LABEL_REPEATED)
                        r = repeated_to_json(c, f, m, depth, &v);
                else
                        r = scalar_to_json(c, f, p, depth, &v);
                path_pop(c, old);
                if (r >= 0 && json_object_object_add(j, key, v) < 0) {
                        json_object_put(v);
                        r = -ENOMEM;
                }
                if (r < 0) {
                        json_object_put(j);
                        return r;
                }
        }
        *ret = j;
        return 0;
}

static void ctx_return_error(Ctx *c, int r, char **ret_error) {
        if (r == -ENOMEM && !c->error)
                c->error = strdup("out of memory");
        if (ret_error)
                *ret_error = TAKE_PTR(c->error);
        free(c->error);
}

/**
 * pbjson_from_message() - a message as a JSON object
 * @msg: the message, borrowed
 * @flags: PBJSON_PROTO_NAMES, PBJSON_INCLUDE_DEFAULTS
 * @ret: the object, owned by the caller (json_object_put())
 * @ret_error: on failure, why (for the caller to free()); may be NULL
 *
 * Return: 0; -EBADMSG if the message holds a string that is not UTF-8 (JSON
 * cannot carry it) or nests too deeply; -ENOMEM.
 */
int pbjson_from_message(const ProtobufCMessage *msg, unsigned flags, json_object **ret, char **ret_error) {
        Ctx c = { .flags = flags };
        int r;

        assert(msg && msg->descriptor);
        r = message_to_json(&c, msg, 0, ret);
        if (r == -EINVAL)
                r = -EBADMSG;   /* only depth fails that way here, and that is the data's fault */
        ctx_return_error(&c, r, ret_error);
        return r;
}

/* Like protobuf-c's message_init_generic(): zero, then proto2 defaults. */
static ProtobufCMessage *message_new(const ProtobufCMessageDescriptor *d) {
        ProtobufCMessage *m = malloc(d->sizeof_message);

        if (!m)
                return NULL;
        if (d->message_init) {
                protobuf_c_message_init(d, m);
                return m;
        }
        memset(m, 0, d->sizeof_message);
        m->descriptor = d;
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                void *p = field_ptr(m, f->offset);

                if (!f->default_value || f->label == PROTOBUF_C_LABEL_REPEATED)
                        continue;
                if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
                        *(const void **) p = f->default_value;
                else
                        memcpy(p, f->default_value, pbdyn_type_size(f->type));
        }
        return m;
}

static const char *json_type_text(json_object *j) {
        switch (json_object_get_type(j)) {
        case json_type_null: return "null";
        case json_type_boolean: return "a boolean";
        case json_type_double: return "a number";
        case json_type_int: return "a number";
        case json_type_object: return "an object";
        case json_type_array: return "an array";
        case json_type_string: return "a string";
        }
        return "something else";
}

static int parse_integer_string(Ctx *c, const char *s, bool is_signed, int64_t *ret_i, uint64_t *ret_u) {
        const char *t = s;
        char *end;

        if (*t == '-' || *t == '+')
                t++;
        if (!*t || strspn(t, "0123456789") != strlen(t))
                return ctx_fail(c, "expected an integer, got \"%s\"", s);
        errno = 0;
        if (is_signed)
                *ret_i = strtoll(s, &end, 10);
        else if (s[0] == '-')
                return ctx_fail(c, "%s is out of range", s);
        else
                *ret_u = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return ctx_fail(c, "%s is out of range", s);
        return 0;
}

static int json_to_integer(Ctx *c, json_object *j, bool is_signed, int64_t min, uint64_t max, void *p,
                           size_t size) {
        int64_t i = 0;
        uint64_t u = 0;
        int r;

        switch (json_object_get_type(j)) {
        case json_type_int:
                i = json_object_get_int64(j);
                if (i == INT64_MAX) {
                        u = json_object_get_uint64(j);
                        if (is_signed && u > INT64_MAX)
                                return ctx_fail(c, "%" PRIu64 " is out of range", u);
                } else if (!is_signed && i < 0) {
                        return ctx_fail(c, "%" PRId64 " is out of range", i);
                } else {
                        u = (uint64_t) i;
                }
                break;
        case json_type_double: {
                double d = json_object_get_double(j);

                if (!isfinite(d) || d != floor(d))
                        return ctx_fail(c, "%s is not an integer", json_object_to_json_string(j));
                if (is_signed ? (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
                              : (d < 0 || d >= 18446744073709551616.0))
                        return ctx_fail(c, "%s is out of range", json_object_to_json_string(j));
                if (is_signed)
                        i = (int64_t) d;
                else
                        u = (uint64_t) d;
                break;
        }
        case json_type_string:
                r = parse_integer_string(c, json_object_get_string(j), is_signed, &i, &u);
                if (r < 0)
                        return r;
                break;
        default:
                return ctx_fail(c, "expected an integer, got %s", json_type_text(j));
        }
        if (is_signed ? (i < min || (i > 0 && (uint64_t) i > max)) : u > max)
                return ctx_fail(c, "%s is out of range", json_object_to_json_string(j));
        if (is_signed) {
                if (size == 4)
                        *(int32_t *) p = (int32_t) i;
                else
                        *(int64_t *) p = i;
        } else {
                if (size == 4)
                        *(uint32_t *) p = (uint32_t) u;
                else
                        *(uint64_t *) p = u;
        }
        return 0;
}

static int json_to_double(Ctx *c, json_object *j, bool is_float, void *p) {
        double d;

        switch (json_object_get_type(j)) {
        case json_type_int:
        case json_type_double:
                d = json_object_get_double(j);
                break;
        case json_type_string: {
                const char *s = json_object_get_string(j);
                char *end;

                if (strcmp(s, "NaN") == 0)
                        d = NAN;
                else if (strcmp(s, "Infinity") == 0)
                        d = INFINITY;
                else if (strcmp(s, "-Infinity") == 0)
                        d = -INFINITY;
                else {
                        /* strtod() would take "nan", "inf", hex and spaces; JSON numbers only */
                        if (!*s || strspn(s, "0123456789+-.eE") != strlen(s))
                                return ctx_fail(c, "expected a number, got \"%s\"", s);
                        errno = 0;
                        d = strtod(s, &end);
                        if (*end || end == s)
                                return ctx_fail(c, "expected a number, got \"%s\"", s);
                        if (errno == ERANGE && isinf(d))
                                return ctx_fail(c, "%s is out of range", s);
                }
                break;
        }
        default:
                return ctx_fail(c, "expected a number, got %s", json_type_text(j));
        }
        if (is_float) {
                /* what rounds to FLT_MAX is fine, as the shortest digits of FLT_MAX do */
                if (isfinite(d) && isinf((float) d))
                        return ctx_fail(c, "%s is out of range for a float", json_object_to_json_string(j));
                *(float *) p = (float) d;
        } else {
                *(double *) p = d;
        }
        return 0;
}

static int json_to_message(Ctx *c, const ProtobufCMessageDescriptor *d, json_object *j, unsigned depth,
                           ProtobufCMessage **ret);

static int json_to_value(Ctx *c, const ProtobufCFieldDescriptor *f, json_object *j, unsigned depth, void *p) {
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
                return json_to_integer(c, j, true, INT32_MIN, INT32_MAX, p, 4);
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                return json_to_integer(c, j, false, 0, UINT32_MAX, p, 4);
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
                return json_to_integer(c, j, true, INT64_MIN, INT64_MAX, p, 8);
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                return json_to_integer(c, j, false, 0, UINT64_MAX, p, 8);
        case PROTOBUF_C_TYPE_FLOAT:
                return json_to_double(c, j, true, p);
        case PROTOBUF_C_TYPE_DOUBLE:
                return json_to_double(c, j, false, p);
        case PROTOBUF_C_TYPE_BOOL:
                if (!json_object_is_type(j, json_type_boolean))
                        return ctx_fail(c, "expected true or false, got %s", json_type_text(j));
                *(protobuf_c_boolean *) p = json_object_get_boolean(j) ? 1 : 0;
                return 0;
        case PROTOBUF_C_TYPE_ENUM: {
                const ProtobufCEnumDescriptor *ed = f->descriptor;

                if (json_object_is_type(j, json_type_string)) {
                        const char *s = json_object_get_string(j);
                        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, s);

                        if (!ev)
                                return ctx_fail(c, "unknown value \"%s\" of enum %s", s, ed->name);
                        *(int32_t *) p = ev->value;
                        return 0;
                }
                if (json_object_is_type(j, json_type_int))
                        return json_to_integer(c, j, true, INT32_MIN, INT32_MAX, p, 4);
                return ctx_fail(c, "expected a name of enum %s, got %s", ed->name, json_type_text(j));
        }
        case PROTOBUF_C_TYPE_STRING: {
                char **s = p;
                const char *v;
                size_t n;

                if (!json_object_is_type(j, json_type_string))
                        return ctx_fail(c, "expected a string, got %s", json_type_text(j));
                v = json_object_get_string(j);
                n = (size_t) json_object_get_string_len(j);
                if (memchr(v, 0, n))
                        return ctx_fail(c, "string contains a NUL character, which protobuf-c cannot carry");
                if (!utf8_is_valid(v, n))
                        return ctx_fail(c, "string is not valid UTF-8");
                if (*s && *s != f->default_value)
                        free(*s);
                *s = strdup(v);
                return *s ? 0 : -ENOMEM;
        }
        case PROTOBUF_C_TYPE_BYTES: {
                ProtobufCBinaryData *b = p;
                const ProtobufCBinaryData *def = f->default_value;
                uint8_t *data;
                size_t len;
                int r;

                if (!json_object_is_type(j, json_type_string))
                        return ctx_fail(c, "expected a base64 string, got %s", json_type_text(j));
                r = base64_decode(json_object_get_string(j), (size_t) json_object_get_string_len(j), &data, &len);
                if (r == -EINVAL)
                        return ctx_fail(c, "invalid base64");
                if (r < 0)
                        return r;
                if (b->data && (!def || b->data != def->data))
                        free(b->data);
                *b = (ProtobufCBinaryData) { .len = len, .data = data };
                return 0;
        }
        case PROTOBUF_C_TYPE_MESSAGE: {
                ProtobufCMessage **m = p;

                if (*m && *m != f->default_value) {
                        protobuf_c_message_free_unpacked(*m, NULL);
                        *m = NULL;
                }
                return json_to_message(c, f->descriptor, j, depth + 1, m);
        }
        }
        return ctx_fail(c, "unsupported field type");
}

static int json_to_map(Ctx *c, const ProtobufCFieldDescriptor *f, json_object *j, unsigned depth,
                       ProtobufCMessage *m) {
        const ProtobufCMessageDescriptor *ed = f->descriptor;
        size_t *n = field_ptr(m, f->quantifier_offset);
        ProtobufCMessage ***arr = field_ptr(m, f->offset);
        size_t count = (size_t) json_object_object_length(j);
        struct json_object_iterator it, end;

        *arr = calloc(count ?: 1, sizeof(ProtobufCMessage *));
        if (!*arr)
                return -ENOMEM;
        *n = count;
        it = json_object_iter_begin(j);
        end = json_object_iter_end(j);
        for (size_t i = 0; !json_object_iter_equal(&it, &end); json_object_iter_next(&it), i++) {
                const char *key = json_object_iter_peek_name(&it);
                json_object *v = json_object_iter_peek_value(&it);
                const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
                size_t old = path_push(c, "[\"%s\"]", key);
                ProtobufCMessage *e;
                int r;

                e = (*arr)[i] = message_new(ed);
                if (!e)
                        return -ENOMEM;
                if (kf->type == PROTOBUF_C_TYPE_BOOL) {
                        if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0)
                                return ctx_fail(c, "map key must be \"true\" or \"false\"");
                        *(protobuf_c_boolean *) field_ptr(e, kf->offset) = strcmp(key, "true") == 0;
                } else {
                        json_object *k = json_object_new_string(key);

                        if (!k)
                                return -ENOMEM;
                        r = json_to_value(c, kf, k, depth, field_ptr(e, kf->offset));
                        json_object_put(k);
                        if (r < 0)
                                return r;
                }
                if (kf->label == PROTOBUF_C_LABEL_OPTIONAL && kf->type != PROTOBUF_C_TYPE_STRING)
                        *(protobuf_c_boolean *) field_ptr(e, kf->quantifier_offset) = 1;
                if (!v)
                        return ctx_fail(c, "null is not a valid map value");
                r = json_to_value(c, vf, v, depth, field_ptr(e, vf->offset));
                if (r < 0)
                        return r;
                if (vf->label == PROTOBUF_C_LABEL_OPTIONAL && vf->type != PROTOBUF_C_TYPE_STRING &&
                    vf->type != PROTOBUF_C_TYPE_MESSAGE)
                        *(protobuf_c_boolean *) field_ptr(e, vf->quantifier_offset) = 1;
                path_pop(c, old);
        }
        return 0;
}

static int json_to_field(Ctx *c, const ProtobufCFieldDescriptor *f, json_object *j, unsigned depth,
                         ProtobufCMessage *m) {
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                size_t *n = field_ptr(m, f->quantifier_offset);
                char **arr = field_ptr(m, f->offset);
                size_t count, size = pbdyn_type_size(f->type);

                if (!j)
                        return 0;
                if (is_map_field(f)) {
                        if (!json_object_is_type(j, json_type_object))
                                return ctx_fail(c, "expected an object (a map), got %s", json_type_text(j));
                        return json_to_map(c, f, j, depth, m);
                }
                if (!json_object_is_type(j, json_type_array))
                        return ctx_fail(c, "expected an array, got %s", json_type_text(j));
                count = json_object_array_length(j);
                /* zeroed elements keep the message freeable if one of them fails */
                *arr = calloc(count ?: 1, size);
                if (!*arr)
                        return -ENOMEM;
                *n = count;
                for (size_t i = 0; i < count; i++) {
                        json_object *v = json_object_array_get_idx(j, i);
                        size_t old = path_push(c, "[%zu]", i);
                        int r;

                        if (!v)
                                return ctx_fail(c, "null is not a valid element of a repeated field");
                        r = json_to_value(c, f, v, depth, *arr + i * size);
                        if (r < 0)
                                return r;
                        path_pop(c, old);
                }
                return 0;
        }

        if (!j)
                return 0;       /* null: the field keeps its default */
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                uint32_t *oneof_case = field_ptr(m, f->quantifier_offset);
                int r;

                if (*oneof_case != 0) {
                        const ProtobufCFieldDescriptor *other =
                                protobuf_c_message_descriptor_get_field(m->descriptor, *oneof_case);

                        return ctx_fail(c, "field \"%s\" of the same oneof is set already",
                                        other ? field_name(other) : "?");
                }
                /* the case first: members share storage, and free_unpacked() reads the case */
                *oneof_case = f->id;
                r = json_to_value(c, f, j, depth, field_ptr(m, f->offset));
                return r;
        }
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
            f->type != PROTOBUF_C_TYPE_MESSAGE)
                *(protobuf_c_boolean *) field_ptr(m, f->quantifier_offset) = 1;
        return json_to_value(c, f, j, depth, field_ptr(m, f->offset));
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, const char *key) {
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
        char buf[256];

        if (f)
                return f;
        for (unsigned i = 0; i < d->n_fields; i++) {
                json_name(field_name(&d->fields[i]), buf, sizeof(buf));
                if (strcmp(buf, key) == 0)
                        return &d->fields[i];
        }
        return NULL;
}

static int json_to_message(Ctx *c, const ProtobufCMessageDescriptor *d, json_object *j, unsigned depth,
                           ProtobufCMessage **ret) {
        _cleanup_(freep) uint8_t *seen = NULL;
        ProtobufCMessage *m;
        int r = 0;

        WktKind kind = wkt_kind(d);

        if (depth > PBDYN_DEPTH_MAX)
                return ctx_fail(c, "messages nested deeper than %u", PBDYN_DEPTH_MAX);
        if (kind != WKT_NONE) {
                m = message_new(d);
                if (!m)
                        return -ENOMEM;
                *ret = m;
                return json_to_wkt(c, m, kind, j, depth);
        }
        if (!json_object_is_type(j, json_type_object))
                return ctx_fail(c, "expected an object (message %s), got %s", d->name, json_type_text(j));
        seen = calloc(d->n_fields ?: 1, 1);
        if (!seen)
                return -ENOMEM;
        m = message_new(d);
        if (!m)
                return -ENOMEM;
        /* stored before it is filled, so that the caller frees it whatever happens */
        *ret = m;

        json_object_object_foreach(j, key, v) {
                const ProtobufCFieldDescriptor *f = find_field(d, key);
                size_t old;

                if (!f) {
                        if (c->flags & PBJSON_IGNORE_UNKNOWN)
                                continue;
                        old = path_push_field(c, key);
                        r = ctx_fail(c, "no such field in message %s", d->name);
                        path_pop(c, old);
                        return r;
                }
                old = path_push_field(c, key);
                if (seen[f - d->fields]) {
                        r = ctx_fail(c, "given twice (as \"%s\" and its other spelling)", field_name(f));
                        return r;
                }
                seen[f - d->fields] = 1;
                /* protobuf-c would pack a NULL required message by dereferencing it */
                if (!v && f->label == PROTOBUF_C_LABEL_REQUIRED)
                        return ctx_fail(c, "required by message %s, cannot be null", d->name);
                r = json_to_field(c, f, v, depth, m);
                if (r < 0)
                        return r;
                path_pop(c, old);
        }

        for (unsigned i = 0; i < d->n_fields; i++)
                if (d->fields[i].label == PROTOBUF_C_LABEL_REQUIRED && !seen[i] && !d->fields[i].default_value) {
                        size_t old = path_push_field(c, field_name(&d->fields[i]));

                        r = ctx_fail(c, "missing, and required by message %s", d->name);
                        path_pop(c, old);
                        return r;
                }
        return 0;
}

/**
 * pbjson_to_message() - a message from a JSON object
 * @desc: the message type
 * @json: the object, borrowed
 * @flags: PBJSON_IGNORE_UNKNOWN
 * @ret: the message, owned by the caller (pbjson_message_free())
 * @ret_error: on failure, why, naming the field (for the caller to free());
 *             may be NULL
 *
 * Field names are accepted in lowerCamelCase and as in the .proto; null
 * leaves a field at its default.
 *
 * Return: 0; -EINVAL if @json does not fit @desc; -ENOMEM.
 */
int pbjson_to_message(const ProtobufCMessageDescriptor *desc, json_object *json, unsigned flags,
                      ProtobufCMessage **ret, char **ret_error) {
        Ctx c = { .flags = flags };
        ProtobufCMessage *m = NULL;
        int r;

        assert(desc && desc->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC);
        r = json_to_message(&c, desc, json, 0, &m);
        if (r < 0) {
                protobuf_c_message_free_unpacked(m, NULL);
                ctx_return_error(&c, r, ret_error);
                return r;
        }
        *ret = m;
        return 0;
}

/**
 * pbjson_parse() - parse JSON text strictly
 * @text: the text, borrowed
 * @size: its length
 * @ret: the value, owned by the caller (json_object_put()); NULL for `null`
 * @ret_error: on failure, what and where, e.g. "invalid JSON at line 1,
 *             column 7: unexpected character" (for the caller to free())
 *
 * Return: 0, -EINVAL or -ENOMEM.
 */
int pbjson_parse(const char *text, size_t size, json_object **ret, char **ret_error) {
        json_tokener *tok;
        json_object *j;
        enum json_tokener_error e;
        size_t end, line = 1, col = 1;

        if (size > INT_MAX) {
                if (ret_error)
                        *ret_error = strdup("JSON text too large");
                return -EINVAL;
        }
        /* maps put two JSON levels per message level */
        tok = json_tokener_new_ex(2 * PBDYN_DEPTH_MAX + 2);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        j = json_tokener_parse_ex(tok, text, (int) size);
        e = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        if (e == json_tokener_success && end < size && strspn(text + end, " \t\r\n") != size - end)
                e = json_tokener_error_parse_unexpected;
        if (e == json_tokener_success) {
                *ret = j;
                return 0;
        }
        json_object_put(j);
        for (size_t i = 0; i < end && i < size; i++) {
                if (text[i] == '\n') {
                        line++;
                        col = 1;
                } else {
                        col++;
                }
        }
        if (ret_error) {
                if (e == json_tokener_continue)
                        *ret_error = strdup("invalid JSON: unexpected end of text");
                else if (asprintf(ret_error, "invalid JSON at line %zu, column %zu: %s", line, col,
                                  json_tokener_error_desc(e)) < 0)
                        *ret_error = NULL;
        }
        return -EINVAL;
}

/**
 * pbjson_decode() - serialized message to JSON text
 * @desc: the message type
 * @data: the bytes, borrowed
 * @size: their number
 * @flags: PBJSON_PROTO_NAMES, PBJSON_INCLUDE_DEFAULTS, PBJSON_PRETTY
 * @ret_json: the text, NUL-terminated, owned by the caller (free())
 * @ret_error: on failure, why (for the caller to free()); may be NULL
 *
 * The bytes are checked with pbdyn_check_wire() before protobuf-c unpacks
 * them, so they may come from anyone.
 *
 * Return: 0; -EBADMSG if the bytes are not a @desc (the caller may show them
 * as they are instead); -ENOMEM.
 */
int pbjson_decode(const ProtobufCMessageDescriptor *desc, const void *data, size_t size, unsigned flags,
                  char **ret_json, char **ret_error) {
        ProtobufCMessage *m;
        json_object *j = NULL;
        char err[256];
        char *s;
        int r;

        r = pbdyn_check_wire(desc, data, size, err, sizeof(err));
        if (r < 0) {
                if (ret_error)
                        *ret_error = strdup(err);
                return -EBADMSG;
        }
        m = protobuf_c_message_unpack(desc, NULL, size, data);
        if (!m) {
                if (ret_error && asprintf(ret_error, "not a valid %s message", desc->name) < 0)
                        *ret_error = NULL;
                return -EBADMSG;
        }
        r = pbjson_from_message(m, flags, &j, ret_error);
        protobuf_c_message_free_unpacked(m, NULL);
        if (r < 0)
                return r;
        s = strdup(json_object_to_json_string_ext(j, JSON_C_TO_STRING_NOSLASHESCAPE |
                                                  (flags & PBJSON_PRETTY ? JSON_C_TO_STRING_PRETTY |
                                                                           JSON_C_TO_STRING_SPACED
                                                                         : JSON_C_TO_STRING_PLAIN)));
        json_object_put(j);
        if (!s)
                return -ENOMEM;
        *ret_json = s;
        return 0;
}

/**
 * pbjson_encode() - JSON text to a serialized message
 * @desc: the message type
 * @json: the text, NUL-terminated, borrowed
 * @flags: PBJSON_IGNORE_UNKNOWN
 * @ret_data: the bytes, owned by the caller (free()); not NULL even when
 *            @ret_size is 0
 * @ret_size: their number
 * @ret_error: on failure, why, naming the field or the position in the
 *             text (for the caller to free()); may be NULL
 *
 * Return: 0; -EINVAL if @json is not JSON or does not fit @desc; -ENOMEM.
 */
int pbjson_encode(const ProtobufCMessageDescriptor *desc, const char *json, unsigned flags,
                  uint8_t **ret_data, size_t *ret_size, char **ret_error) {
        ProtobufCMessage *m = NULL;
        json_object *j = NULL;
        uint8_t *buf;
        size_t n;
        int r;

        r = pbjson_parse(json, strlen(json), &j, ret_error);
        if (r < 0)
                return r;
        r = pbjson_to_message(desc, j, flags, &m, ret_error);
        json_object_put(j);
        if (r < 0)
                return r;
        n = protobuf_c_message_get_packed_size(m);
        buf = malloc(n ?: 1);
        if (!buf) {
                pbjson_message_free(m);
                return -ENOMEM;
        }
        protobuf_c_message_pack(m, buf);
        pbjson_message_free(m);
        *ret_data = buf;
        *ret_size = n;
        return 0;
}

/**
 * pbjson_message_free() - free a message from pbjson_to_message()
 * @msg: the message, or NULL
 */
void pbjson_message_free(ProtobufCMessage *msg) {
        protobuf_c_message_free_unpacked(msg, NULL);
}
