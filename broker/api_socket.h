/*
 * The API's socket: listening on a UNIX path only its owner and one group
 * can open, and who is on the other end of a connection (SO_PEERCRED and
 * the peer's groups), as a role. Never blocks.
 */
#ifndef NESTOR_API_SOCKET_H
#define NESTOR_API_SOCKET_H

#include "api_parse.h"

#include <stddef.h>
#include <sys/types.h>

/*
 * Listen on PATH (a stale socket there is replaced), mode 0660, group GROUP
 * if not empty (*GID gets it; 0 without one). Returns the non-blocking
 * socket or a negative errno with ERR filled.
 */
int api_listen(const char *path, const char *group, gid_t *gid, char *err, size_t errlen);

/*
 * The role of FD's peer: root and this process's user are administrators,
 * so are members of ADMIN_GID; members of GATEWAY_GID are the gateway
 * (0: no such group). WHO gets "uid N" for messages.
 */
enum api_role api_peer_role(int fd, gid_t gateway_gid, gid_t admin_gid, char *who, size_t len);

#endif
