/* The API's socket and its callers' roles (see api_socket.h). */
#include "api_socket.h"

#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int api_listen(const char *path, const char *group, gid_t *gid, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	*gid = 0;
	if (!path || strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "api_socket path too long");
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	unlink(path); /* a stale socket of an earlier nestord */
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	mode_t old = umask(0117);
	int br = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (br < 0 || listen(fd, 64) < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(e));
		if (fd >= 0)
			close(fd);
		return -e;
	}
	chmod(path, 0660);
	if (group && *group) {
		struct group *g = getgrnam(group);
		if (!g || chown(path, (uid_t)-1, g->gr_gid) < 0) {
			snprintf(err, errlen, "cannot give %s to group '%s'", path, group);
			close(fd);
			unlink(path);
			return -EPERM;
		}
		*gid = g->gr_gid;
	}
	return fd;
}

static bool in_group(gid_t gid, gid_t primary, const gid_t *groups, size_t n)
{
	if (!gid)
		return false;
	if (gid == primary)
		return true;
	for (size_t i = 0; i < n; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

enum api_role api_peer_role(int fd, gid_t gateway_gid, gid_t admin_gid, char *who, size_t len)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	snprintf(who, len, "an unknown caller");
	if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0)
		return API_ROLE_NONE;
	snprintf(who, len, "uid %u", (unsigned)cr.uid);
	/* root, and nestord's own user (nestorctl run by the service's owner) */
	if (cr.uid == 0 || cr.uid == geteuid())
		return API_ROLE_ADMIN;
	gid_t groups[256];
	socklen_t gl = sizeof(groups);
	size_t n =
	    getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &gl) == 0 ? gl / sizeof(gid_t) : 0;
	if (in_group(admin_gid, cr.gid, groups, n))
		return API_ROLE_ADMIN;
	if (in_group(gateway_gid, cr.gid, groups, n))
		return API_ROLE_GATEWAY;
	return API_ROLE_NONE;
}
