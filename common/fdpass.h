#pragma once

/*
 * SCM_RIGHTS helpers shared by the broker and libplexus: attaching fds to
 * an outgoing msghdr and collecting the fds of a received one.
 */

#include <stddef.h>
#include <sys/socket.h>

#include "frame.h"

/* Control buffer large enough for FRAME_FDS_MAX fds, suitably aligned. */
typedef union FdControl {
        struct cmsghdr align;
        unsigned char buf[CMSG_SPACE(FRAME_FDS_MAX * sizeof(int))];
} FdControl;

void fdpass_attach(struct msghdr *mh, FdControl *control, const int *fds, size_t n_fds);
size_t fdpass_collect(struct msghdr *mh, int *fds, size_t max);
