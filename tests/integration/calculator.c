/*
 * The typed test service (calculator.h).
 */

#include <errno.h>
#include <stdlib.h>

#include "calculator.h"
#include "typed-test.pb-c.h"
#include "typed-test-descriptor.h"

static int on_add(plx_msg *call, const ProtobufCMessage *request, void *userdata) {
        const Plexus__Test__AddRequest *req = (const Plexus__Test__AddRequest *)request;
        Plexus__Test__AddReply reply = PLEXUS__TEST__ADD_REPLY__INIT;

        reply.sum = req->a + req->b;
        return plx_msg_reply_message(call, &reply.base);
}

static int on_echo(plx_msg *call, const ProtobufCMessage *request, void *userdata) {
        return plx_msg_reply_message(call, request);
}

static int on_big(plx_msg *call, const ProtobufCMessage *request, void *userdata) {
        const Plexus__Test__BigRequest *req = (const Plexus__Test__BigRequest *)request;
        Plexus__Test__BigReply reply = PLEXUS__TEST__BIG_REPLY__INIT;
        int r;

        reply.data.len = req->size;
        reply.data.data = malloc(req->size ?: 1);
        if (!reply.data.data)
                return -ENOMEM;
        for (size_t i = 0; i < req->size; i++)
                reply.data.data[i] = (uint8_t)(i * 13 + 1);
        r = plx_msg_reply_message(call, &reply.base);
        free(reply.data.data);
        return r;
}

/* Replies with the wrong type: libplexus refuses, and the handler says so. */
static int on_wrong(plx_msg *call, const ProtobufCMessage *request, void *userdata) {
        Plexus__Test__Tick tick = PLEXUS__TEST__TICK__INIT;
        int r;

        r = plx_msg_reply_message(call, &tick.base);
        if (r != -EINVAL)
                return plx_msg_reply_error(call, "plexus.test.Error.Unrefused", "a wrong reply type was sent");
        return plx_msg_reply_error(call, "plexus.test.Error.Refused", "the wrong reply type was refused");
}

int calculator_quit(plx_msg *call, void *userdata) {
        plx_msg_reply(call, NULL, 0);
        plx_bus_exit(plx_msg_get_bus(call), 0);
        return 0;
}

/* Publishes a Tick {n: 7, note: "seven"}, then bytes that are no Tick. */
int calculator_publish_tick(plx_msg *call, void *userdata) {
        Plexus__Test__Tick tick = PLEXUS__TEST__TICK__INIT;
        static const uint8_t garbage[] = { 0x0a, 0x05, 'x' }; /* field 1 as bytes, truncated */
        plx_bus *bus = plx_msg_get_bus(call);
        int r;

        tick.n = 7;
        tick.note = (char *)"seven";
        r = plx_bus_publish_message(bus, CALCULATOR_TICK_TOPIC, &tick.base);
        if (r >= 0)
                r = plx_bus_publish(bus, CALCULATOR_TICK_TOPIC, garbage, sizeof(garbage));
        if (r < 0)
                return r;
        return plx_msg_reply(call, NULL, 0);
}

static const plx_method_handler calculator_handlers[] = {
        { "Add", on_add },
        { "Echo", on_echo },
        { "Big", on_big },
        { "Wrong", on_wrong },
        {}
};

int calculator_quit_typed(plx_msg *call, const ProtobufCMessage *request, void *userdata) {
        return calculator_quit(call, userdata);
}

static const plx_topic_type calculator_topics[] = {
        { CALCULATOR_TICK_TOPIC, &plexus__test__tick__descriptor },
        {}
};

int calculator_export(plx_bus *bus, plx_slot **ret_slot, bool with_descriptors) {
        plx_interface iface = {
                .service = &plexus__test__calculator__descriptor,
                .methods = calculator_handlers,
                .topics = calculator_topics,
        };

        if (with_descriptors) {
                iface.descriptor_set = typed_test_descriptor_set;
                iface.descriptor_set_size = sizeof(typed_test_descriptor_set);
        }
        return plx_bus_export(bus, ret_slot, &iface, NULL);
}
