/*
 * Verbs that show what clients offer: introspect (one destination's
 * methods, topics and the types they use, expanded) and tree (every
 * well-known name with its methods). Both ask Introspect
 * (docs/protocol.md §18) through describe.c.
 *
 * Types are printed in the syntax of a .proto file, each once, in the
 * order they are first referred to, nested message and enum types after
 * the fields that use them.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "describe.h"
#include "json.h"
#include "table.h"

/* Types to print: a queue that never holds one twice. */
typedef struct TypeList {
        const void *types[512];         /* ProtobufCMessageDescriptor or ProtobufCEnumDescriptor */
        size_t n;
} TypeList;

static void type_list_add(TypeList *l, const void *type) {
        if (!type)
                return;
        for (size_t i = 0; i < l->n; i++)
                if (l->types[i] == type)
                        return;
        if (l->n < ELEMENTSOF(l->types))
                l->types[l->n++] = type;
}

static bool is_enum(const void *type) {
        return ((const ProtobufCEnumDescriptor *)type)->magic == PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC;
}

static const char *scalar_name(ProtobufCType t) {
        static const char *const names[] = {
                [PROTOBUF_C_TYPE_INT32] = "int32", [PROTOBUF_C_TYPE_SINT32] = "sint32",
                [PROTOBUF_C_TYPE_SFIXED32] = "sfixed32", [PROTOBUF_C_TYPE_INT64] = "int64",
                [PROTOBUF_C_TYPE_SINT64] = "sint64", [PROTOBUF_C_TYPE_SFIXED64] = "sfixed64",
                [PROTOBUF_C_TYPE_UINT32] = "uint32", [PROTOBUF_C_TYPE_FIXED32] = "fixed32",
                [PROTOBUF_C_TYPE_UINT64] = "uint64", [PROTOBUF_C_TYPE_FIXED64] = "fixed64",
                [PROTOBUF_C_TYPE_FLOAT] = "float", [PROTOBUF_C_TYPE_DOUBLE] = "double",
                [PROTOBUF_C_TYPE_BOOL] = "bool", [PROTOBUF_C_TYPE_ENUM] = "enum",
                [PROTOBUF_C_TYPE_STRING] = "string", [PROTOBUF_C_TYPE_BYTES] = "bytes",
                [PROTOBUF_C_TYPE_MESSAGE] = "message",
        };

        return (size_t)t < ELEMENTSOF(names) && names[t] ? names[t] : "?";
}

/* A map field is a repeated field of a nested "<Field>Entry" message with key = 1 and value = 2. */
static const ProtobufCMessageDescriptor *map_entry(const ProtobufCFieldDescriptor *f) {
        const ProtobufCMessageDescriptor *m;
        const char *suffix;

        if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE)
                return NULL;
        m = f->descriptor;
        suffix = strrchr(m->short_name, 'E');
        if (!suffix || strcmp(suffix, "Entry") != 0 || m->n_fields != 2 ||
            m->fields[0].id != 1 || strcmp(m->fields[0].name, "key") != 0 ||
            m->fields[1].id != 2 || strcmp(m->fields[1].name, "value") != 0)
                return NULL;
        return m;
}

/* The type of @f as a .proto writes it (without the label); in @buf if composed. */
static const char *field_type_name(const ProtobufCFieldDescriptor *f, char *buf, size_t size) {
        const ProtobufCMessageDescriptor *entry = map_entry(f);

        if (entry) {
                char value[256];

                snprintf(buf, size, "map<%s, %s>", scalar_name(entry->fields[0].type),
                         field_type_name(&entry->fields[1], value, sizeof(value)));
                return buf;
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                return ((const ProtobufCMessageDescriptor *)f->descriptor)->name;
        if (f->type == PROTOBUF_C_TYPE_ENUM)
                return ((const ProtobufCEnumDescriptor *)f->descriptor)->name;
        return scalar_name(f->type);
}

static const char *field_label(const ProtobufCFieldDescriptor *f) {
        if (map_entry(f))
                return "";
        switch (f->label) {
        case PROTOBUF_C_LABEL_REPEATED:
                return "repeated ";
        case PROTOBUF_C_LABEL_OPTIONAL:
                return f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF ? "" : "optional ";
        case PROTOBUF_C_LABEL_REQUIRED:
                return "required ";
        default:
                return "";
        }
}

/* Queue the types @m's fields refer to. */
static void collect_field_types(TypeList *l, const ProtobufCMessageDescriptor *m) {
        for (unsigned int i = 0; i < m->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &m->fields[i];
                const ProtobufCMessageDescriptor *entry = map_entry(f);

                if (entry)
                        f = &entry->fields[1];
                if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_ENUM)
                        type_list_add(l, f->descriptor);
        }
}

static void print_type(FILE *out, const void *type) {
        char buf[600];

        if (is_enum(type)) {
                const ProtobufCEnumDescriptor *e = type;

                fprintf(out, "enum %s {\n", e->name);
                for (unsigned int i = 0; i < e->n_values; i++)
                        fprintf(out, "        %s = %d;\n", e->values[i].name, e->values[i].value);
                fprintf(out, "}\n");
                return;
        }

        const ProtobufCMessageDescriptor *m = type;

        fprintf(out, "message %s {\n", m->name);
        for (unsigned int i = 0; i < m->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &m->fields[i];

                fprintf(out, "        %s%s %s = %u;%s\n", field_label(f), field_type_name(f, buf, sizeof(buf)),
                        f->name, f->id, f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF ? "        // oneof" : "");
        }
        fprintf(out, "}\n");
}

static void json_type(Json *j, const void *type) {
        char buf[600];

        json_object_begin(j, NULL);
        if (is_enum(type)) {
                const ProtobufCEnumDescriptor *e = type;

                json_string(j, "kind", "enum");
                json_string(j, "name", e->name);
                json_array_begin(j, "values");
                for (unsigned int i = 0; i < e->n_values; i++) {
                        json_object_begin(j, NULL);
                        json_string(j, "name", e->values[i].name);
                        json_int(j, "number", e->values[i].value);
                        json_object_end(j);
                }
                json_array_end(j);
        } else {
                const ProtobufCMessageDescriptor *m = type;

                json_string(j, "kind", "message");
                json_string(j, "name", m->name);
                json_array_begin(j, "fields");
                for (unsigned int i = 0; i < m->n_fields; i++) {
                        const ProtobufCFieldDescriptor *f = &m->fields[i];
                        const char *label = map_entry(f) ? "map" :
                                            f->label == PROTOBUF_C_LABEL_REPEATED ? "repeated" :
                                            f->label == PROTOBUF_C_LABEL_REQUIRED ? "required" :
                                            f->label == PROTOBUF_C_LABEL_OPTIONAL &&
                                            !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ? "optional" : "";

                        json_object_begin(j, NULL);
                        json_string(j, "name", f->name);
                        json_uint(j, "number", f->id);
                        json_string(j, "type", field_type_name(f, buf, sizeof(buf)));
                        json_string(j, "label", label);
                        json_bool(j, "oneof", f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF);
                        json_object_end(j);
                }
                json_array_end(j);
        }
        json_object_end(j);
}

/* Every type @desc's methods and topics use, and the types those use, in order. */
static void collect_types(TypeList *l, const Description *desc) {
        const Plexus__Introspection *in = desc->introspection;

        for (size_t i = 0; i < in->n_methods; i++) {
                type_list_add(l, description_find_type(desc, in->methods[i]->request_type));
                type_list_add(l, description_find_type(desc, in->methods[i]->reply_type));
        }
        for (size_t i = 0; i < in->n_topics; i++)
                type_list_add(l, description_find_type(desc, in->topics[i]->message_type));
        for (size_t i = 0; i < l->n; i++)
                if (!is_enum(l->types[i]))
                        collect_field_types(l, l->types[i]);
}

static const char *or_dash(const char *s) {
        return s && *s ? s : "-";
}

/* The name of a type not in the descriptors, marked as unknown. */
static const char *type_cell(const Description *desc, const char *name, char *buf, size_t size) {
        if (!name || !*name)
                return "-";
        if (description_find_type(desc, name))
                return name;
        snprintf(buf, size, "%s (no descriptor)", name);
        return buf;
}

/* Why @desc has no answer, as an exit code and message. */
static int describe_failed(Ctl *c, const Description *desc, const char *destination) {
        char what[600];

        if (!desc)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
        snprintf(what, sizeof(what), "Introspect on %s", destination);
        if (desc->error_name) {
                if (strcmp(desc->error_name, PLX_ERROR_UNKNOWN_METHOD) == 0)
                        return ctl_fail(c, CTL_EXIT_FAILURE, desc->error_name,
                                        "%s: it does not describe itself (not a libplexus client?)", what);
                if (strcmp(desc->error_name, PLX_ERROR_SERVICE_UNKNOWN) == 0 ||
                    strcmp(desc->error_name, PLX_ERROR_NAME_HAS_NO_OWNER) == 0)
                        return ctl_fail(c, CTL_EXIT_NO_NAME, desc->error_name, "%s: %s", what,
                                        desc->error_message);
                return ctl_fail(c, CTL_EXIT_FAILURE, desc->error_name, "%s: %s: %s", what, desc->error_name,
                                desc->error_message);
        }
        return ctl_call_failed(c, what, desc->error, NULL);
}

/**
 * interface_introspect() - plexusctl introspect NAME
 * @c:          the context
 * @argc:       1
 * @argv:       a unique id, a well-known name or "plexus"
 *
 * Return: the exit code.
 */
int interface_introspect(Ctl *c, int argc, char **argv) {
        _cleanup_(describer_freep) Describer *d = NULL;
        _cleanup_(table_freep) Table *methods = NULL, *topics = NULL;
        const char *destination = argv[0];
        const Plexus__Introspection *in;
        const Description *desc;
        TypeList types = {};
        char buf1[600], buf2[600];
        int r;

        r = ctl_connect(c);
        if (r != 0)
                return r;
        if (describer_new(&d, c->bus, ctl_timeout(c, PLX_TIMEOUT_DEFAULT)) < 0)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
        desc = describer_get(d, destination);
        if (!desc || !desc->introspection)
                return describe_failed(c, desc, destination);
        in = desc->introspection;
        collect_types(&types, desc);

        if (c->json) {
                Json j;

                json_init(&j, stdout);
                json_object_begin(&j, NULL);
                json_string(&j, "destination", destination);
                json_string(&j, "library", in->library);
                json_array_begin(&j, "methods");
                for (size_t i = 0; i < in->n_methods; i++) {
                        json_object_begin(&j, NULL);
                        json_string(&j, "name", in->methods[i]->name);
                        json_string(&j, "service", in->methods[i]->service);
                        json_string(&j, "request_type", in->methods[i]->request_type);
                        json_string(&j, "reply_type", in->methods[i]->reply_type);
                        json_object_end(&j);
                }
                json_array_end(&j);
                json_array_begin(&j, "topics");
                for (size_t i = 0; i < in->n_topics; i++) {
                        json_object_begin(&j, NULL);
                        json_string(&j, "pattern", in->topics[i]->pattern);
                        json_string(&j, "message_type", in->topics[i]->message_type);
                        json_object_end(&j);
                }
                json_array_end(&j);
                json_array_begin(&j, "types");
                for (size_t i = 0; i < types.n; i++)
                        json_type(&j, types.types[i]);
                json_array_end(&j);
                json_object_end(&j);
                json_end(&j);
                return fflush(stdout) == 0 && !ferror(stdout) ? CTL_EXIT_SUCCESS : CTL_EXIT_FAILURE;
        }

        if (table_new(&methods, (const char *const[]){ "METHOD", "REQUEST", "REPLY", "SERVICE" }, 4) < 0 ||
            table_new(&topics, (const char *const[]){ "TOPIC", "TYPE" }, 2) < 0)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
        for (size_t i = 0; i < in->n_methods; i++) {
                const Plexus__MethodInfo *m = in->methods[i];

                if (table_add_row(methods, (const char *const[]){
                                m->name, type_cell(desc, m->request_type, buf1, sizeof(buf1)),
                                type_cell(desc, m->reply_type, buf2, sizeof(buf2)), or_dash(m->service) }) < 0)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");
        }
        for (size_t i = 0; i < in->n_topics; i++)
                if (table_add_row(topics, (const char *const[]){
                                in->topics[i]->pattern,
                                type_cell(desc, in->topics[i]->message_type, buf1, sizeof(buf1)) }) < 0)
                        return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");

        printf("%s (%s)\n\n", destination, in->library);
        if (in->n_methods > 0)
                table_print(methods, stdout, c->columns, c->legend);
        else
                printf("No methods.\n");
        printf("\n");
        if (in->n_topics > 0) {
                table_print(topics, stdout, c->columns, c->legend);
                printf("\n");
        }
        for (size_t i = 0; i < types.n; i++) {
                print_type(stdout, types.types[i]);
                if (i + 1 < types.n)
                        printf("\n");
        }
        return fflush(stdout) == 0 && !ferror(stdout) ? CTL_EXIT_SUCCESS : CTL_EXIT_FAILURE;
}

static void tree_print(FILE *out, const char *name, const char *owner, const Description *desc) {
        const Plexus__Introspection *in = desc ? desc->introspection : NULL;

        if (owner)
                fprintf(out, "%s (%s%s%s)\n", name, owner, in ? ", " : "", in ? in->library : "");
        else
                fprintf(out, "%s (%s)\n", name, in ? in->library : "?");
        if (!in) {
                fprintf(out, "└─ (does not describe itself%s%s)\n", desc && desc->error_name ? ": " : "",
                        desc && desc->error_name ? desc->error_name : "");
                return;
        }
        if (in->n_methods == 0)
                fprintf(out, "└─ (no methods)\n");
        for (size_t i = 0; i < in->n_methods; i++) {
                const Plexus__MethodInfo *m = in->methods[i];

                fprintf(out, "%s %s", i + 1 < in->n_methods ? "├─" : "└─", m->name);
                if (*m->request_type)
                        fprintf(out, "(%s) → %s", m->request_type, m->reply_type);
                fprintf(out, "\n");
        }
}

static void tree_json(Json *j, const char *name, const char *owner, const Description *desc) {
        const Plexus__Introspection *in = desc ? desc->introspection : NULL;

        json_object_begin(j, NULL);
        json_string(j, "name", name);
        if (owner)
                json_string(j, "owner", owner);
        else
                json_null(j, "owner");
        if (!in) {
                json_null(j, "library");
                json_null(j, "methods");
                json_object_end(j);
                return;
        }
        json_string(j, "library", in->library);
        json_array_begin(j, "methods");
        for (size_t i = 0; i < in->n_methods; i++) {
                json_object_begin(j, NULL);
                json_string(j, "name", in->methods[i]->name);
                json_string(j, "request_type", in->methods[i]->request_type);
                json_string(j, "reply_type", in->methods[i]->reply_type);
                json_object_end(j);
        }
        json_array_end(j);
        json_object_end(j);
}

/**
 * interface_tree() - plexusctl tree
 *
 * The broker, then every well-known name in byte order, each with the
 * methods its owner answers. Owners are asked once each; one that does
 * not answer within --timeout (default 2 s) is shown without methods.
 *
 * Return: the exit code.
 */
int interface_tree(Ctl *c, int argc, char **argv) {
        _cleanup_(describer_freep) Describer *d = NULL;
        _cleanup_(name_set_deinit) NameSet names = {};
        Json j;
        int r;

        r = ctl_connect(c);
        if (r != 0)
                return r;
        r = fetch_names(c, &names);
        if (r != 0)
                return r;
        if (describer_new(&d, c->bus, ctl_timeout(c, DESCRIBE_TIMEOUT_USEC)) < 0)
                return ctl_fail(c, CTL_EXIT_FAILURE, NULL, "out of memory");

        if (c->json) {
                json_init(&j, stdout);
                json_array_begin(&j, NULL);
                tree_json(&j, PLX_BROKER, NULL, describer_get(d, PLX_BROKER));
        } else {
                tree_print(stdout, PLX_BROKER, NULL, describer_get(d, PLX_BROKER));
        }
        for (size_t i = 0; i < names.n_names; i++) {
                const Plexus__NameEntry *n = names.names[i];
                /* Ask the owner by unique id: one answer per client, however many names it owns. */
                const Description *desc = describer_get(d, n->owner);

                if (c->json) {
                        tree_json(&j, n->name, n->owner, desc);
                } else {
                        printf("\n");
                        tree_print(stdout, n->name, n->owner, desc);
                }
        }
        if (c->json) {
                json_array_end(&j);
                json_end(&j);
        }
        return fflush(stdout) == 0 && !ferror(stdout) ? CTL_EXIT_SUCCESS : CTL_EXIT_FAILURE;
}
