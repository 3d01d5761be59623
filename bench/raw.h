#pragma once

/*
 * The floor: what the same exchanges cost between two processes connected
 * directly by an AF_UNIX SOCK_SEQPACKET socket, with no broker in between.
 * A bus adds a hop each way, so its round trip cannot go below this.
 */

#include "measure.h"

int raw_rtt(const BenchOptions *o);
int raw_pipeline(const BenchOptions *o);
int raw_connect(const BenchOptions *o);
