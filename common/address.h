#pragma once

/*
 * Bus addresses. An address is the filesystem path of the broker's
 * SOCK_SEQPACKET socket. The default is, in this order: $PLEXUS_BUS_ADDRESS,
 * $XDG_RUNTIME_DIR/plexus/bus (the per-user bus), /run/plexus/bus when
 * running as root (the system bus).
 */

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#define ADDRESS_ENV "PLEXUS_BUS_ADDRESS"
#define ADDRESS_SYSTEM "/run/plexus/bus"
#define ADDRESS_USER_SUFFIX "/plexus/bus"

int address_default(char *buf, size_t size);
int address_to_sockaddr(const char *path, struct sockaddr_un *ret, socklen_t *ret_len);
