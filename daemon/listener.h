#pragma once

/*
 * The listening socket: created at the bus address (replacing a stale socket
 * file, never a live bus) or adopted from socket activation, and accepted
 * from in batches. Out of fds, it pauses until a peer goes away.
 */

#include "broker.h"

int listener_open(Broker *b, const char *path);
int listener_adopt(Broker *b, int fd);
void listener_close(Broker *b);
void listener_dispatch(Broker *b);
