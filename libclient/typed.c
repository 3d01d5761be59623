/*
 * Typed services (plexus/protobuf.h): protobuf-c messages in and out of the
 * untyped API. An export is a slot of its own owning one method slot per
 * handler; each method slot's handler unpacks the request as the method's
 * input type before the application's handler runs, and marks the CALL
 * with the output type that plx_msg_reply_message() then insists on.
 *
 * Nothing here touches the wire: a typed method is an ordinary method whose
 * payloads happen to be protobuf messages.
 */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plexus/protobuf.h"

#include "bus-internal.h"
#include "topic.h"

/* Messages up to this size are packed on the stack. */
#define PACK_STACK_MAX 1024u

typedef struct Export Export;

typedef struct ExportMethod {
        Export *export;
        const ProtobufCMethodDescriptor *method;
        plx_typed_method_fn handler;
        plx_slot *slot;         /* its SLOT_METHOD, owned by the export */
} ExportMethod;

struct Export {
        plx_interface iface;    /* a copy; what it points to is borrowed */
        void *userdata;
        size_t n_methods;
        ExportMethod methods[];
};

/*
 * A packed message: on the stack, on the heap, or (above the bus's large
 * threshold) in a shared buffer that the send functions take over.
 */
typedef struct Packed {
        uint8_t stack[PACK_STACK_MAX];
        uint8_t *heap;
        plx_buffer *buffer;
        const uint8_t *data;
        size_t len;
} Packed;

static void packed_done(Packed *p) {
        free(p->heap);
        plx_buffer_free(p->buffer);
}

static int packed_init(Packed *p, plx_bus *bus, const ProtobufCMessage *msg, bool allow_buffer) {
        size_t len;
        int r;

        p->heap = NULL;
        p->buffer = NULL;
        p->data = p->stack;
        p->len = 0;
        if (!msg)
                return 0;

        len = protobuf_c_message_get_packed_size(msg);
        if (len <= sizeof(p->stack)) {
                p->len = protobuf_c_message_pack(msg, p->stack);
                return 0;
        }
        if (allow_buffer && len > bus->large_threshold && bus->large_path != PLX_LARGE_INLINE) {
                r = plx_buffer_new(&p->buffer, len);
                if (r < 0)
                        return r;
                p->len = protobuf_c_message_pack(msg, plx_buffer_get_data(p->buffer));
                p->data = NULL;
                return 0;
        }
        p->heap = malloc(len);
        if (!p->heap)
                return -ENOMEM;
        p->len = protobuf_c_message_pack(msg, p->heap);
        p->data = p->heap;
        return 0;
}

static int typed_dispatch(plx_msg *call, void *userdata);

/**
 * typed_method_of() - the service and method behind the method slot @s
 *
 * Return: true if @s is a typed method (and sets both), false if not.
 */
bool typed_method_of(plx_slot *s, const ProtobufCServiceDescriptor **ret_service,
                     const ProtobufCMethodDescriptor **ret_method) {
        ExportMethod *em;

        if (s->type != SLOT_METHOD || s->method.callback != typed_dispatch)
                return false;
        em = s->userdata;
        *ret_service = em->export->iface.service;
        *ret_method = em->method;
        return true;
}

/* The interface of an export slot. */
const plx_interface *typed_interface_of(plx_slot *s) {
        if (s->type != SLOT_EXPORT)
                return NULL;
        return &((Export *)s->userdata)->iface;
}

static int typed_dispatch(plx_msg *call, void *userdata) {
        ExportMethod *em = userdata;
        const ProtobufCMessageDescriptor *input = em->method->input;
        plx_typed_method_fn handler = em->handler;
        void *app_userdata = em->export->userdata;
        ProtobufCMessage *request;
        const void *payload;
        char text[320];
        size_t size;
        int r;

        payload = plx_msg_get_payload(call, &size);
        request = protobuf_c_message_unpack(input, NULL, size, payload);
        if (!request) {
                snprintf(text, sizeof(text), "%s expects a %s; the payload (%zu bytes) is not one",
                         call->member, input->name, size);
                r = plx_msg_reply_error(call, PLX_ERROR_INVALID_ARGS, text);
                return r == -ENOBUFS || r == -ECONNRESET ? 0 : r;
        }

        call->typed_reply = em->method->output;
        /* The handler may withdraw the export, @em with it: nothing of it is read after. */
        r = handler(call, request, app_userdata);
        protobuf_c_message_free_unpacked(request, NULL);
        return r;
}

static void export_free(void *userdata) {
        free(userdata);
}

/**
 * typed_export_disconnect() - withdraw the methods of the export slot @s
 */
void typed_export_disconnect(plx_slot *s) {
        Export *e = s->userdata;

        for (size_t i = 0; i < e->n_methods; i++)
                e->methods[i].slot = plx_slot_free(e->methods[i].slot);
        list_unlink(&s->export.link);
}

static const ProtobufCMethodDescriptor *service_method(const ProtobufCServiceDescriptor *service,
                                                      const char *name) {
        return service && name ? protobuf_c_service_descriptor_get_method_by_name(service, name) : NULL;
}

_public_ int plx_bus_export(plx_bus *bus, plx_slot **ret_slot, const plx_interface *iface, void *userdata) {
        size_t n = 0;
        plx_slot *s;
        Export *e;
        int r;

        assert_return(bus && iface, -EINVAL);
        assert_return(!iface->descriptor_set || iface->descriptor_set_size > 0, -EINVAL);
        for (const plx_method_handler *h = iface->methods; h && h->name; h++, n++)
                assert_return(h->handler && service_method(iface->service, h->name), -EINVAL);
        for (const plx_topic_type *t = iface->topics; t && t->pattern; t++)
                assert_return(t->type && topic_pattern_is_valid(t->pattern), -EINVAL);

        e = calloc(1, sizeof(*e) + n * sizeof(e->methods[0]));
        if (!e)
                return -ENOMEM;
        e->iface = *iface;
        e->userdata = userdata;

        r = slot_new(&s, bus, SLOT_EXPORT, e);
        if (r < 0) {
                free(e);
                return r;
        }
        s->destroy = export_free;
        list_append(&bus->exports, &s->export.link);

        for (size_t i = 0; i < n; i++) {
                ExportMethod *em = &e->methods[i];

                em->export = e;
                em->handler = iface->methods[i].handler;
                em->method = service_method(iface->service, iface->methods[i].name);
                r = plx_bus_add_method(bus, &em->slot, em->method->name, typed_dispatch, em);
                if (r < 0) {
                        plx_slot_free(s);
                        return r;
                }
                e->n_methods++;
        }

        if (ret_slot)
                *ret_slot = s;
        else
                s->floating = true;
        return 0;
}

_public_ int plx_msg_reply_message(plx_msg *call, const ProtobufCMessage *reply) {
        Packed p;
        int r;

        assert_return(call && call->bus && reply, -EINVAL);
        assert_return(!call->typed_reply || reply->descriptor == call->typed_reply, -EINVAL);

        r = packed_init(&p, call->bus, reply, true);
        if (r < 0)
                return r;
        if (p.buffer)
                r = plx_msg_reply_buffer(call, TAKE_PTR(p.buffer), p.len);
        else
                r = plx_msg_reply(call, p.data, p.len);
        packed_done(&p);
        return r;
}

/* The reply @answer unpacked as @type into *@ret (if wanted): 0, -EBADMSG or -ENOMEM. */
static int answer_unpack(plx_msg *answer, const ProtobufCMessageDescriptor *type, ProtobufCMessage **ret) {
        ProtobufCMessage *m;
        const void *payload;
        size_t size;

        payload = plx_msg_get_payload(answer, &size);
        m = protobuf_c_message_unpack(type, NULL, size, payload);
        if (!m)
                return -EBADMSG;
        if (ret)
                *ret = m;
        else
                protobuf_c_message_free_unpacked(m, NULL);
        return 0;
}

_public_ int plx_bus_call_message(plx_bus *bus, const char *destination, const char *member,
                                  const ProtobufCMessage *request, const ProtobufCMessageDescriptor *reply_type,
                                  uint64_t timeout_usec, ProtobufCMessage **ret_reply, plx_msg **ret_answer) {
        _cleanup_(plx_msg_unrefp_internal) plx_msg *answer = NULL;
        Packed p;
        int r;

        assert_return(bus && reply_type, -EINVAL);

        r = packed_init(&p, bus, request, true);
        if (r < 0)
                return r;
        if (p.buffer)
                r = plx_bus_call_buffer(bus, destination, member, TAKE_PTR(p.buffer), p.len, timeout_usec,
                                        &answer);
        else
                r = plx_bus_call(bus, destination, member, p.data, p.len, timeout_usec, &answer);
        packed_done(&p);

        if (r >= 0)
                r = answer_unpack(answer, reply_type, ret_reply);
        if (ret_answer)
                *ret_answer = TAKE_PTR(answer);
        return r;
}

_public_ int plx_bus_call_method(plx_bus *bus, const char *destination, const ProtobufCServiceDescriptor *service,
                                 const char *method, const ProtobufCMessage *request, uint64_t timeout_usec,
                                 ProtobufCMessage **ret_reply, plx_msg **ret_answer) {
        const ProtobufCMethodDescriptor *m = service_method(service, method);

        assert_return(m, -EINVAL);
        assert_return(!request || request->descriptor == m->input, -EINVAL);
        return plx_bus_call_message(bus, destination, m->name, request, m->output, timeout_usec, ret_reply,
                                    ret_answer);
}

/* What a typed async call or subscription needs to call back: freed with its slot. */
typedef struct TypedCallback {
        const ProtobufCMessageDescriptor *type;
        union {
                plx_typed_reply_fn reply;
                plx_typed_signal_fn signal;
        };
        void *userdata;
} TypedCallback;

static int typed_callback_new(TypedCallback **ret, const ProtobufCMessageDescriptor *type, void *userdata) {
        TypedCallback *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->type = type;
        c->userdata = userdata;
        *ret = c;
        return 0;
}

/* Let the slot @s free its TypedCallback; make @s floating unless the caller wants it. */
static void typed_callback_attach(plx_slot *s, plx_slot **ret_slot) {
        s->destroy = free;
        if (ret_slot)
                *ret_slot = s;
        else
                s->floating = true;
}

static int typed_reply_dispatch(plx_msg *answer, void *userdata) {
        TypedCallback *c = userdata;
        ProtobufCMessage *reply = NULL;
        int r;

        if (plx_msg_get_kind(answer) == PLX_MSG_REPLY)
                (void)answer_unpack(answer, c->type, &reply);
        r = c->reply(answer, reply, c->userdata);
        if (reply)
                protobuf_c_message_free_unpacked(reply, NULL);
        return r;
}

_public_ int plx_bus_call_message_async(plx_bus *bus, plx_slot **ret_slot, const char *destination,
                                        const char *member, const ProtobufCMessage *request,
                                        const ProtobufCMessageDescriptor *reply_type, uint64_t timeout_usec,
                                        plx_typed_reply_fn callback, void *userdata) {
        TypedCallback *c;
        plx_slot *s;
        Packed p;
        int r;

        assert_return(bus && reply_type && callback, -EINVAL);

        r = typed_callback_new(&c, reply_type, userdata);
        if (r < 0)
                return r;
        c->reply = callback;

        /* There is no async call taking a plx_buffer: pack on the heap, the library copies once. */
        r = packed_init(&p, bus, request, false);
        if (r >= 0)
                r = plx_bus_call_async(bus, &s, destination, member, p.data, p.len, timeout_usec,
                                       typed_reply_dispatch, c);
        packed_done(&p);
        if (r < 0) {
                free(c);
                return r;
        }
        typed_callback_attach(s, ret_slot);
        return 0;
}

_public_ int plx_bus_publish_message(plx_bus *bus, const char *topic, const ProtobufCMessage *message) {
        Packed p;
        int r;

        assert_return(bus && message, -EINVAL);

        r = packed_init(&p, bus, message, true);
        if (r < 0)
                return r;
        if (p.buffer)
                r = plx_bus_publish_buffer(bus, topic, TAKE_PTR(p.buffer), p.len);
        else
                r = plx_bus_publish(bus, topic, p.data, p.len);
        packed_done(&p);
        return r;
}

static int typed_signal_dispatch(plx_msg *signal, void *userdata) {
        TypedCallback *c = userdata;
        ProtobufCMessage *message = NULL;
        int r;

        (void)answer_unpack(signal, c->type, &message);
        r = c->signal(signal, message, c->userdata);
        if (message)
                protobuf_c_message_free_unpacked(message, NULL);
        return r;
}

_public_ int plx_bus_subscribe_message(plx_bus *bus, plx_slot **ret_slot, const char *pattern,
                                       const ProtobufCMessageDescriptor *type, plx_typed_signal_fn callback,
                                       void *userdata) {
        TypedCallback *c;
        plx_slot *s;
        int r;

        assert_return(bus && type && callback, -EINVAL);

        r = typed_callback_new(&c, type, userdata);
        if (r < 0)
                return r;
        c->signal = callback;
        r = plx_bus_subscribe(bus, &s, pattern, typed_signal_dispatch, c);
        if (r < 0) {
                free(c);
                return r;
        }
        typed_callback_attach(s, ret_slot);
        return 0;
}
