#pragma once

/*
 * libplexus: typed services over protobuf-c
 *
 * A service's interface is a protobuf `service` in a .proto file: each rpc
 * is a method whose request and reply are protobuf messages. protoc-c
 * generates the C types and their descriptors; these functions pack and
 * unpack them, so handlers and callers deal in messages, not bytes. The
 * member a CALL names is the rpc's name as written in the .proto (e.g.
 * "SetTarget"), and the payloads are the messages' standard protobuf
 * encoding: any client, typed or not, in any language, can talk to a typed
 * service.
 *
 * Every client answers the standard Introspect call (plexus.Introspectable
 * in the broker's plexus.proto) without any code of its own: the reply
 * lists its methods (typed ones with their message types), the topics it
 * declared with their message types, the library version, and the
 * FileDescriptorSet(s) handed to plx_bus_export(), so that tools such as
 * `plexusctl call NAME METHOD '{json}'` can encode and decode its messages.
 * docs/typed-services.md is the guide; it shows how to generate the
 * descriptor set at build time (protoc-c --descriptor_set_out, then
 * plexus-embed).
 *
 * A plx_bus is not thread-safe: like the rest of libplexus, call these from
 * the thread that uses the bus. Every function may be called from inside a
 * libplexus callback. Messages returned to the caller (ProtobufCMessage **)
 * are freed with protobuf_c_message_free_unpacked(msg, NULL).
 *
 * Link with `pkg-config --libs libplexus` (it pulls in libprotobuf-c).
 */

#include <protobuf-c/protobuf-c.h>

#include <plexus/plexus.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * typedef plx_typed_method_fn - handles one typed method
 * @call:       the CALL, as for plx_method_fn; answer it with
 *              plx_msg_reply_message() (now or later, holding a reference)
 *              or plx_msg_reply_error()
 * @request:    the request, unpacked as the method's input type; valid
 *              only during the callback (plx_msg_get_payload() has the bytes)
 * @userdata:   as given to plx_bus_export()
 *
 * Return: as plx_method_fn: a negative errno without a reply answers the
 * caller with plexus.Error.Failed.
 */
typedef int (*plx_typed_method_fn)(plx_msg *call, const ProtobufCMessage *request, void *userdata);

/**
 * typedef plx_typed_reply_fn - receives the answer to a typed async call
 * @answer:     the REPLY or ERROR (see plx_reply_fn)
 * @reply:      the REPLY unpacked as the expected type; NULL for an ERROR,
 *              or if the REPLY's payload is not a valid message of that
 *              type. Valid only during the callback.
 * @userdata:   as given
 */
typedef int (*plx_typed_reply_fn)(plx_msg *answer, const ProtobufCMessage *reply, void *userdata);

/**
 * typedef plx_typed_signal_fn - receives a typed signal
 * @signal:     the SIGNAL (see plx_signal_fn)
 * @message:    its payload unpacked as the subscription's type, valid only
 *              during the callback; NULL if the payload is not a valid
 *              message of that type (the bytes are still in @signal)
 * @userdata:   as given
 */
typedef int (*plx_typed_signal_fn)(plx_msg *signal, const ProtobufCMessage *message, void *userdata);

/* One method of an exported service: the rpc's name in the .proto and its handler. */
typedef struct plx_method_handler {
        const char *name;
        plx_typed_method_fn handler;
} plx_method_handler;

/*
 * A topic the service publishes on: a topic, or a pattern naming a family
 * of topics ("thermostat/+/temperature"), and its payload's message type.
 */
typedef struct plx_topic_type {
        const char *pattern;
        const ProtobufCMessageDescriptor *type;
} plx_topic_type;

/*
 * What plx_bus_export() exports. Everything is borrowed for as long as the
 * export lives: use static data (the generated descriptors and an embedded
 * descriptor set are).
 */
typedef struct plx_interface {
        /* The generated service descriptor, e.g. &example__thermostat__descriptor; NULL to declare topics only. */
        const ProtobufCServiceDescriptor *service;
        /* Handlers, ended by an entry whose name is NULL. Methods without one answer UnknownMethod. */
        const plx_method_handler *methods;
        /* Topics, ended by an entry whose pattern is NULL; may be NULL. */
        const plx_topic_type *topics;
        /*
         * A serialized google.protobuf.FileDescriptorSet holding the
         * service's types and their imports (protoc-c --include_imports
         * --descriptor_set_out), returned by Introspect; NULL if none, in
         * which case Introspect still names the methods and types.
         */
        const void *descriptor_set;
        size_t descriptor_set_size;
} plx_interface;

/**
 * plx_bus_export() - serve a protobuf service on @bus
 * @bus:        connection
 * @ret_slot:   optional; freeing it withdraws every method of the export.
 *              When NULL the export lives as long as @bus.
 * @iface:      what to export; borrowed for the export's lifetime
 * @userdata:   handed to every handler
 *
 * Registers one method handler per entry of @iface->methods (see
 * plx_bus_add_method()). A CALL's payload is unpacked as the method's input
 * type before the handler runs; a payload that is not a valid message of
 * that type is answered with plexus.Error.InvalidArgs naming the type, and
 * the handler does not run. Unknown fields are accepted (newer clients).
 * The topics and the descriptor set are only described by Introspect:
 * publishing is up to the application (plx_bus_publish_message()).
 *
 * Return: 0; -EINVAL for a NULL @iface or a handler whose name is not a
 * method of @iface->service; -EEXIST if a method of that name already has
 * a handler on @bus (also one of another export); -ENOMEM. On failure
 * nothing is registered.
 */
int plx_bus_export(plx_bus *bus, plx_slot **ret_slot, const plx_interface *iface, void *userdata);

/**
 * plx_msg_reply_message() - answer @call with a message
 * @call:       a CALL received by a handler
 * @reply:      the reply; borrowed, packed before this returns
 *
 * For a CALL dispatched to a plx_bus_export() handler, @reply must be of
 * the method's output type. Large messages take the large path on their
 * own (see plx_msg_reply()); above the bus's large threshold the message is
 * packed straight into a shared buffer, without an intermediate copy.
 *
 * Return: as plx_msg_reply(); -EINVAL for a reply of the wrong type.
 */
int plx_msg_reply_message(plx_msg *call, const ProtobufCMessage *reply);

/**
 * plx_bus_call_message() - call a method with a message, wait for its reply
 * @bus:        connection
 * @destination: as for plx_bus_call()
 * @member:     the method's name
 * @request:    the request; NULL sends an empty payload (which is the
 *              encoding of any message with all fields at their defaults)
 * @reply_type: the expected reply's descriptor
 * @timeout_usec: as for plx_bus_call()
 * @ret_reply:  optional; on 0, the unpacked reply, owned by the caller
 *              (protobuf_c_message_free_unpacked())
 * @ret_answer: optional; the REPLY or ERROR frame, as plx_bus_call()'s
 *              @ret_reply: for the error's name and text, the sender's
 *              credentials, or the bytes of a reply that did not unpack
 *
 * Return: 0 on a REPLY that unpacks as @reply_type; -EBADMSG if it does
 * not; otherwise as plx_bus_call() (-EREMOTEIO for an ERROR).
 */
int plx_bus_call_message(plx_bus *bus, const char *destination, const char *member,
                         const ProtobufCMessage *request, const ProtobufCMessageDescriptor *reply_type,
                         uint64_t timeout_usec, ProtobufCMessage **ret_reply, plx_msg **ret_answer);

/**
 * plx_bus_call_method() - plx_bus_call_message() checked against a service
 * @service:    the callee's generated service descriptor
 * @method:     the rpc's name in @service
 *
 * Looks @method up in @service, checks that @request (if not NULL) is of
 * its input type, and expects its output type.
 *
 * Return: as plx_bus_call_message(); -EINVAL if @service has no such method
 * or @request is of another type.
 */
int plx_bus_call_method(plx_bus *bus, const char *destination, const ProtobufCServiceDescriptor *service,
                        const char *method, const ProtobufCMessage *request, uint64_t timeout_usec,
                        ProtobufCMessage **ret_reply, plx_msg **ret_answer);

/**
 * plx_bus_call_message_async() - plx_bus_call_async() with messages
 * @ret_slot:   as for plx_bus_call_async()
 * @callback:   runs once with the answer, as plx_bus_call_async()'s, and
 *              the reply unpacked as @reply_type (or NULL)
 *
 * The other arguments are as for plx_bus_call_message().
 *
 * Return: 0, or as plx_bus_call_async().
 */
int plx_bus_call_message_async(plx_bus *bus, plx_slot **ret_slot, const char *destination, const char *member,
                               const ProtobufCMessage *request, const ProtobufCMessageDescriptor *reply_type,
                               uint64_t timeout_usec, plx_typed_reply_fn callback, void *userdata);

/**
 * plx_bus_publish_message() - publish @message on @topic
 *
 * Return: as plx_bus_publish().
 */
int plx_bus_publish_message(plx_bus *bus, const char *topic, const ProtobufCMessage *message);

/**
 * plx_bus_subscribe_message() - subscribe to @pattern, unpacking as @type
 * @ret_slot:   as for plx_bus_subscribe()
 * @pattern:    as for plx_bus_subscribe()
 * @type:       the payloads' message type; borrowed for the slot's lifetime
 * @callback:   runs for each matching signal with its unpacked payload
 * @userdata:   handed to @callback
 *
 * Blocks until the broker confirmed the subscription, as plx_bus_subscribe().
 *
 * Return: as plx_bus_subscribe().
 */
int plx_bus_subscribe_message(plx_bus *bus, plx_slot **ret_slot, const char *pattern,
                              const ProtobufCMessageDescriptor *type, plx_typed_signal_fn callback,
                              void *userdata);

#ifdef __cplusplus
}
#endif
