/*
 * The broker's method table (daemon/driver.c) against its description,
 * service plexus.Broker of proto/plexus.proto: Introspect types the
 * methods from the service descriptor, so a method in one but not the
 * other would be answered untyped, or listed but unknown.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "driver.h"
#include "plexus.pb-c.h"

static void test_every_described_method_is_answered(void **state) {
        const ProtobufCServiceDescriptor *service = &plexus__broker__descriptor;

        assert_true(service->n_methods >= 16);
        for (unsigned int i = 0; i < service->n_methods; i++) {
                if (!driver_has_method(service->methods[i].name))
                        fail_msg("plexus.Broker.%s has no handler in driver.c", service->methods[i].name);
        }
}

static void test_every_answered_method_is_described(void **state) {
        static const char *const answered[] = {
                "Subscribe", "Unsubscribe", "Ping", "GetBusInfo", "RequestName", "ReleaseName",
                "RenewName", "GetNameOwner", "ListQueuedOwners", "ListNames", "BecomeMonitor",
                "ListClients", "GetClient", "GetStats", "AckTransfer", "Introspect",
        };
        const ProtobufCServiceDescriptor *service = &plexus__broker__descriptor;

        /* driver.c's table, as docs/protocol.md §6 lists it. */
        for (size_t i = 0; i < sizeof(answered) / sizeof(answered[0]); i++) {
                assert_true(driver_has_method(answered[i]));
                if (!protobuf_c_service_descriptor_get_method_by_name(service, answered[i]))
                        fail_msg("%s is answered but not in plexus.Broker", answered[i]);
        }
        assert_int_equal(service->n_methods, sizeof(answered) / sizeof(answered[0]));
        assert_false(driver_has_method("Hello"));
        assert_false(driver_has_method("introspect"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_described_method_is_answered),
                cmocka_unit_test(test_every_answered_method_is_described),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
