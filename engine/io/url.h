/* Base URLs ("http://host:port/prefix") and the origins they name. */
#ifndef LR_URL_H
#define LR_URL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct url {
	bool https;
	char host[256];          /* without brackets for IPv6 literals */
	uint16_t port;
	char path[1024];         /* prefix without a trailing slash ("" or "/v1") */
	char host_header[272];   /* value of the Host header */
	bool resolved;           /* addr holds the numeric address */
	struct sockaddr_storage addr;
	socklen_t addr_len;
};

/* Parses and, for numeric hosts and localhost, resolves. Returns 0, or
 * LR_EINVAL with *why set to a static explanation. */
int url_parse(const char *s, struct url *u, const char **why);

/* in with any userinfo (user:password@) replaced by ***, for messages. */
void url_redact(const char *in, char *out, size_t cap);

/* Same scheme, host and port. */
bool url_same_origin(const struct url *a, const struct url *b);

#endif
