#pragma once

/*
 * A stand-in for journald's datagram socket, for running dbus-broker
 * outside systemd: dbus-broker-launch and dbus-broker log only to
 * /run/systemd/journal/socket and give up if nobody listens there.
 */

int sink_run(const char *path);
