#pragma once

/*
 * The test service: a forked client process with methods the integration
 * tests call. It reports "ready <unique-id>" on its report pipe once it is
 * connected and its methods are registered, then runs plx_bus_run() until
 * "Quit" or until the broker goes away; both end it with exit code 0, so a
 * non-zero code means it crashed or a check failed.
 *
 * Methods (request payload -> answer):
 *   Echo       any bytes -> REPLY with the same bytes
 *   EchoLent   the same, the REPLY lent from a private copy when large (process_vm)
 *   Fail       -> ERROR SERVICE_ERROR_NAME / SERVICE_ERROR_MESSAGE
 *   EIO        handler returns -EIO without replying
 *   Never      never answered; reports "never" on the pipe
 *   Die        reports "dying", then the process kills itself with SIGKILL
 *   Whoami     -> "<sender> <uid> <pid>" of the CALL as stamped by the broker
 *   Timeout    -> timeout_ms of the CALL as the broker stamped it, as text;
 *              also reports "timeout <ms>" on the pipe (for NO_REPLY calls)
 *   Publish    topic -> publishes SERVICE_PUBLISH_PAYLOAD on it, then REPLY
 *   Quit       -> REPLY, then plx_bus_run() returns
 */

#include <stdbool.h>
#include <stddef.h>

#include <plexus/plexus.h>

#include "harness.h"

#define SERVICE_ERROR_NAME "org.example.Error.Test"
#define SERVICE_ERROR_MESSAGE "something broke on purpose"
#define SERVICE_PUBLISH_PAYLOAD "published-before-reply"

int service_fork(HarnessChild *ret, const char *address, char *ret_id, size_t size);
/* The service's body, for a child that must change first (e.g. its uid); @userdata is the address. */
int service_main(int report_fd, int control_fd, void *userdata);

/*
 * The usual fixture: a broker, the test service, and a connection of the
 * test's own. Teardown frees the connection, stops the broker (which ends
 * the service), requires the service to exit 0 unless the test reaped it
 * already, and then runs harness_teardown()'s checks.
 */
typedef struct ServiceFixture {
        Harness *harness;
        HarnessChild service;
        char service_id[256];
        plx_bus *bus;
} ServiceFixture;

int service_fixture_setup(void **state);
int service_fixture_setup_config(void **state, const char *config);
int service_fixture_teardown(void **state);

/* A cmocka test entry with the usual fixture. */
#define SERVICE_TEST(fn) cmocka_unit_test_setup_teardown(fn, service_fixture_setup, service_fixture_teardown)

/* Records the ERRORs a connection gets outside of calls (plx_bus_set_error_handler()). */
typedef struct ErrorLog {
        char name[256];                 /* of the last one */
        unsigned int n_errors;
        bool done;                      /* at least one arrived */
} ErrorLog;

int error_log_record(plx_msg *error, void *userdata);
