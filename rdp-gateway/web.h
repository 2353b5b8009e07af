/*
 * The browser door (web.c): serve one browser's secure WebSocket (noVNC)
 * through an RDP connection to this connection's own worker, whose end of
 * the link is RDP_FD. FD is the browser's TCP socket, ADDR its address.
 * Returns the process's exit status.
 */
#ifndef NESTOR_GW_WEB_H
#define NESTOR_GW_WEB_H

#include "gateway.h"

int gw_web_run(struct gw *gw, int fd, const char *addr, int rdp_fd);

#endif
