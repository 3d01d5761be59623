/*
 * plexusctl's knowledge of the bus's types (see describe.h).
 */

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <plexus/protobuf.h>

#include "describe.h"
#include "pb-dynamic.h"
#include "pb-json.h"
#include "plexus-descriptor.h"
#include "topic.h"
#include "util.h"

struct Describer {
        plx_bus *bus;
        uint64_t timeout_usec;
        bool owners_described;          /* every well-known name's owner asked (describer_declared_type()) */
        size_t n_descriptions;
        Description descriptions[DESCRIBE_MAX];
};

/**
 * describer_new() - a describer asking on @bus
 * @ret:        the describer
 * @bus:        a connection that may call (not a monitor); borrowed, must
 *              outlive the describer
 * @timeout_usec: how long to wait for each Introspect
 *
 * Return: 0 or -ENOMEM.
 */
int describer_new(Describer **ret, plx_bus *bus, uint64_t timeout_usec) {
        Describer *d = calloc(1, sizeof(*d));

        if (!d)
                return -ENOMEM;
        d->bus = bus;
        d->timeout_usec = timeout_usec;
        *ret = d;
        return 0;
}

Describer *describer_free(Describer *d) {
        if (!d)
                return NULL;
        for (size_t i = 0; i < d->n_descriptions; i++) {
                Description *desc = &d->descriptions[i];

                free(desc->destination);
                if (desc->introspection)
                        protobuf_c_message_free_unpacked(&desc->introspection->base, NULL);
                pbdyn_pool_free(desc->pool);
                free(desc->error_name);
                free(desc->error_message);
        }
        free(d);
        return NULL;
}

/* Ask @desc->destination; whatever happens, @desc says so afterwards. */
static void describe(Describer *d, Description *desc) {
        ProtobufCMessage *reply = NULL;
        plx_msg *answer = NULL;
        int r;

        r = pbdyn_pool_new(&desc->pool);
        if (r >= 0)
                r = pbdyn_pool_add_set(desc->pool, plexus_descriptor_set, plexus_descriptor_set_size);
        if (r < 0) {
                desc->error = r;
                return;
        }

        r = plx_bus_call_message(d->bus, desc->destination, PLX_INTROSPECT, NULL, &plexus__introspection__descriptor,
                                 d->timeout_usec, &reply, &answer);
        if (r == -EREMOTEIO && answer) {
                desc->error_name = strdup(plx_msg_get_error_name(answer) ?: "");
                desc->error_message = strdup(plx_msg_get_error_message(answer) ?: "");
        }
        plx_msg_unref(answer);
        if (r < 0) {
                desc->error = r;
                return;
        }
        desc->introspection = (Plexus__Introspection *)reply;

        /*
         * A set that does not parse leaves the pool as it was: the methods
         * and topics are still listed, their payloads shown untyped.
         */
        if (desc->introspection->descriptor_set.len > 0)
                (void)pbdyn_pool_add_set(desc->pool, desc->introspection->descriptor_set.data,
                                         desc->introspection->descriptor_set.len);
}

/**
 * describer_get() - what @destination says about itself
 *
 * Asks once per destination (a unique id, a well-known name or "plexus");
 * later calls return the kept answer.
 *
 * Return: the description (introspection NULL if it did not answer), or
 * NULL if no more destinations can be kept or memory ran out.
 */
const Description *describer_get(Describer *d, const char *destination) {
        Description *desc;

        for (size_t i = 0; i < d->n_descriptions; i++)
                if (strcmp(d->descriptions[i].destination, destination) == 0)
                        return &d->descriptions[i];
        if (d->n_descriptions == DESCRIBE_MAX)
                return NULL;

        desc = &d->descriptions[d->n_descriptions];
        *desc = (Description){ .destination = strdup(destination) };
        if (!desc->destination)
                return NULL;
        d->n_descriptions++;
        describe(d, desc);
        return desc;
}

/** description_find_type() - the message type @full_name, as @desc's descriptors define it */
const ProtobufCMessageDescriptor *description_find_type(const Description *desc, const char *full_name) {
        if (!desc || !desc->pool || !full_name || !*full_name)
                return NULL;
        return pbdyn_pool_find_message(desc->pool, full_name);
}

/** description_find_method() - the method @member of @desc's answer, or NULL */
const Plexus__MethodInfo *description_find_method(const Description *desc, const char *member) {
        if (!desc || !desc->introspection)
                return NULL;
        for (size_t i = 0; i < desc->introspection->n_methods; i++)
                if (strcmp(desc->introspection->methods[i]->name, member) == 0)
                        return desc->introspection->methods[i];
        return NULL;
}

/** description_find_topic() - the first declared topic or pattern of @desc that @topic matches */
const Plexus__TopicInfo *description_find_topic(const Description *desc, const char *topic) {
        if (!desc || !desc->introspection)
                return NULL;
        for (size_t i = 0; i < desc->introspection->n_topics; i++) {
                const Plexus__TopicInfo *t = desc->introspection->topics[i];

                if (topic_pattern_is_valid(t->pattern) && topic_match(t->pattern, topic))
                        return t;
        }
        return NULL;
}

static const ProtobufCMessageDescriptor *method_type(Describer *d, const char *destination, const char *member,
                                                     bool reply) {
        const Description *desc = describer_get(d, destination);
        const Plexus__MethodInfo *m = description_find_method(desc, member);

        if (!m)
                return NULL;
        return description_find_type(desc, reply ? m->reply_type : m->request_type);
}

/** describer_request_type() - the request type of @member at @destination, if it says */
const ProtobufCMessageDescriptor *describer_request_type(Describer *d, const char *destination, const char *member) {
        return method_type(d, destination, member, false);
}

/** describer_reply_type() - the reply type of @member at @destination, if it says */
const ProtobufCMessageDescriptor *describer_reply_type(Describer *d, const char *destination, const char *member) {
        return method_type(d, destination, member, true);
}

/** describer_signal_type() - the type @sender declared for @topic, if it did */
const ProtobufCMessageDescriptor *describer_signal_type(Describer *d, const char *sender, const char *topic) {
        const Description *desc = describer_get(d, sender);
        const Plexus__TopicInfo *t = description_find_topic(desc, topic);

        return t ? description_find_type(desc, t->message_type) : NULL;
}

/* Ask the owner of every well-known name, once: ListNames page by page. */
static void describe_owners(Describer *d) {
        _cleanup_(freep) char *after = strdup("");

        d->owners_described = true;
        while (after) {
                Plexus__ListNamesRequest req = PLEXUS__LIST_NAMES_REQUEST__INIT;
                ProtobufCMessage *reply = NULL;
                Plexus__NameList *page;
                char *next = NULL;

                req.after = after;
                if (plx_bus_call_message(d->bus, PLX_BROKER, "ListNames", &req.base, &plexus__name_list__descriptor,
                                         d->timeout_usec, &reply, NULL) < 0)
                        return;
                page = (Plexus__NameList *)reply;
                for (size_t i = 0; i < page->n_names; i++)
                        (void)describer_get(d, page->names[i]->owner);
                /* Names sort in byte order: a cursor that does not grow would keep us here forever. */
                if (page->next_after[0] && strcmp(page->next_after, after) > 0)
                        next = strdup(page->next_after);
                protobuf_c_message_free_unpacked(reply, NULL);
                free(after);
                after = next;
        }
}

/**
 * describer_declared_type() - the type some client on the bus declares for @topic
 *
 * For signals whose sender does not describe them (plexusctl publish, say):
 * the first owner of a well-known name, or the broker, that declares a
 * pattern matching @topic. Owners are asked once, on the first call.
 */
const ProtobufCMessageDescriptor *describer_declared_type(Describer *d, const char *topic) {
        const ProtobufCMessageDescriptor *type = describer_signal_type(d, PLX_BROKER, topic);

        if (type)
                return type;
        if (!d->owners_described)
                describe_owners(d);
        for (size_t i = 0; i < d->n_descriptions; i++) {
                const Plexus__TopicInfo *t = description_find_topic(&d->descriptions[i], topic);

                if (t && (type = description_find_type(&d->descriptions[i], t->message_type)))
                        return type;
        }
        return NULL;
}

/**
 * describer_find_type() - a message type of that full name, in any description
 *
 * Asks every owner first (see describer_declared_type()).
 */
const ProtobufCMessageDescriptor *describer_find_type(Describer *d, const char *full_name) {
        const ProtobufCMessageDescriptor *type = description_find_type(describer_get(d, PLX_BROKER), full_name);

        if (type)
                return type;
        if (!d->owners_described)
                describe_owners(d);
        for (size_t i = 0; i < d->n_descriptions; i++)
                if ((type = description_find_type(&d->descriptions[i], full_name)))
                        return type;
        return NULL;
}

/**
 * describe_payload() - @data decoded as @type, in JSON
 * @flags:      DESCRIBE_PRETTY, DESCRIBE_DEFAULTS
 *
 * Return: the JSON text (free()), or NULL if @type is NULL or the bytes
 * are not a @type: the caller shows them untyped.
 */
char *describe_payload(const ProtobufCMessageDescriptor *type, const void *data, size_t size, unsigned flags) {
        unsigned pb_flags = (flags & DESCRIBE_PRETTY ? PBJSON_PRETTY : 0) |
                            (flags & DESCRIBE_DEFAULTS ? PBJSON_INCLUDE_DEFAULTS : 0);
        char *json = NULL;

        if (!type)
                return NULL;
        if (pbjson_decode(type, data, size, pb_flags, &json, NULL) < 0)
                return NULL;
        return json;
}

/**
 * describe_encode() - the JSON text @json encoded as a @type
 * @ret_data:   the bytes (free())
 * @ret_size:   their number
 * @ret_error:  on -EINVAL, what is wrong, naming the field (free())
 *
 * Return: 0, -EINVAL or -ENOMEM.
 */
int describe_encode(const ProtobufCMessageDescriptor *type, const char *json, uint8_t **ret_data, size_t *ret_size,
                    char **ret_error) {
        return pbjson_encode(type, json, 0, ret_data, ret_size, ret_error);
}
