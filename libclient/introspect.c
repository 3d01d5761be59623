/*
 * Introspect: every libplexus client describes itself, without code of the
 * application's. The answer (plexus.Introspection) lists the methods the
 * application handles, in registration order (typed ones with their
 * service and message types), the topics its exports declared, and the
 * descriptor sets of its exports concatenated: a serialized
 * FileDescriptorSet is a sequence of `file` fields, so concatenating sets
 * yields one set (which may name a file twice; readers skip repeats).
 *
 * An application that registers its own "Introspect" handler answers
 * instead (slot_dispatch_call() only falls back to this one).
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "plexus/protobuf.h"

#include "bus-internal.h"

static bool set_seen(const plx_interface *const *ifaces, size_t n, const void *set) {
        for (size_t i = 0; i < n; i++)
                if (ifaces[i]->descriptor_set == set)
                        return true;
        return false;
}

/**
 * introspect_reply() - answer the Introspect CALL @call
 *
 * Return: 0 (failures to answer are the caller's concern only when the
 * connection is gone, as for any automatic answer), or -ENOMEM.
 */
int introspect_reply(plx_bus *bus, plx_msg *call) {
        Plexus__Introspection reply = PLEXUS__INTROSPECTION__INIT;
        _cleanup_(freep) Plexus__MethodInfo *methods = NULL;
        _cleanup_(freep) Plexus__MethodInfo **method_ptrs = NULL;
        _cleanup_(freep) Plexus__TopicInfo *topics = NULL;
        _cleanup_(freep) Plexus__TopicInfo **topic_ptrs = NULL;
        _cleanup_(freep) const plx_interface **ifaces = NULL;
        _cleanup_(freep) uint8_t *sets = NULL;
        size_t n_methods = 0, n_topics = 0, n_ifaces = 0, sets_len = 0;
        plx_slot *s;
        int r;

        list_for_each_entry(s, &bus->slots, link) {
                const plx_interface *iface = typed_interface_of(s);

                if (s->type == SLOT_METHOD)
                        n_methods++;
                if (!iface)
                        continue;
                n_ifaces++;
                for (const plx_topic_type *t = iface->topics; t && t->pattern; t++)
                        n_topics++;
        }

        methods = calloc(n_methods ?: 1, sizeof(*methods));
        method_ptrs = calloc(n_methods ?: 1, sizeof(*method_ptrs));
        topics = calloc(n_topics ?: 1, sizeof(*topics));
        topic_ptrs = calloc(n_topics ?: 1, sizeof(*topic_ptrs));
        ifaces = calloc(n_ifaces ?: 1, sizeof(*ifaces));
        if (!methods || !method_ptrs || !topics || !topic_ptrs || !ifaces)
                goto oom;

        n_methods = n_topics = n_ifaces = 0;
        list_for_each_entry(s, &bus->slots, link) {
                const ProtobufCServiceDescriptor *service;
                const ProtobufCMethodDescriptor *m;
                const plx_interface *iface;

                if (s->type == SLOT_METHOD) {
                        Plexus__MethodInfo *mi = &methods[n_methods];

                        plexus__method_info__init(mi);
                        mi->name = s->method.member;
                        if (typed_method_of(s, &service, &m)) {
                                mi->service = (char *)service->name;
                                mi->request_type = (char *)m->input->name;
                                mi->reply_type = (char *)m->output->name;
                        }
                        method_ptrs[n_methods++] = mi;
                        continue;
                }

                iface = typed_interface_of(s);
                if (!iface)
                        continue;
                for (const plx_topic_type *t = iface->topics; t && t->pattern; t++) {
                        Plexus__TopicInfo *ti = &topics[n_topics];

                        plexus__topic_info__init(ti);
                        ti->pattern = (char *)t->pattern;
                        ti->message_type = (char *)t->type->name;
                        topic_ptrs[n_topics++] = ti;
                }
                if (iface->descriptor_set && !set_seen(ifaces, n_ifaces, iface->descriptor_set)) {
                        uint8_t *grown = realloc(sets, sets_len + iface->descriptor_set_size);

                        if (!grown)
                                goto oom;
                        memcpy(grown + sets_len, iface->descriptor_set, iface->descriptor_set_size);
                        sets = grown;
                        sets_len += iface->descriptor_set_size;
                }
                ifaces[n_ifaces++] = iface;
        }

        reply.library = (char *)"libplexus " PLEXUS_VERSION;
        reply.n_methods = n_methods;
        reply.methods = method_ptrs;
        reply.n_topics = n_topics;
        reply.topics = topic_ptrs;
        reply.descriptor_set.data = sets;
        reply.descriptor_set.len = sets_len;

        call->typed_reply = NULL;
        r = plx_msg_reply_message(call, &reply.base);
        return r == -ENOBUFS || r == -ECONNRESET ? 0 : r;

oom:
        r = plx_msg_reply_error(call, PLX_ERROR_LIMITS_EXCEEDED, "out of memory describing this client");
        return r == -ENOBUFS || r == -ECONNRESET ? 0 : -ENOMEM;
}
