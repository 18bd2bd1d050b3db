#include "io/url.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llmring.h"

static int url_fail(const char **why, const char *msg)
{
	if (why)
		*why = msg;
	return LR_EINVAL;
}

static void url_resolve_numeric(struct url *u)
{
	const char *h = u->host;
	if (strcasecmp(h, "localhost") == 0)
		h = "127.0.0.1";
	struct sockaddr_in *v4 = (struct sockaddr_in *)&u->addr;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&u->addr;
	memset(&u->addr, 0, sizeof(u->addr));
	if (inet_pton(AF_INET, h, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons(u->port);
		u->addr_len = sizeof(*v4);
		u->resolved = true;
	} else if (inet_pton(AF_INET6, h, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons(u->port);
		u->addr_len = sizeof(*v6);
		u->resolved = true;
	}
}

int url_parse(const char *s, struct url *u, const char **why)
{
	memset(u, 0, sizeof(*u));
	if (!s)
		return url_fail(why, "no URL");
	if (strncasecmp(s, "http://", 7) == 0) {
		s += 7;
		u->port = 80;
	} else if (strncasecmp(s, "https://", 8) == 0) {
		s += 8;
		u->https = true;
		u->port = 443;
	} else {
		return url_fail(why, "URL must start with http:// or https://");
	}
	/* Userinfo is refused, never used: a key belongs in the provider's
	 * variable, and a password in a URL ends up in logs. */
	size_t authority = strcspn(s, "/?#");
	if (memchr(s, '@', authority))
		return url_fail(why, "credentials (user:password@) in a URL are not supported; "
		                     "give the key in the provider's API key variable");
	const char *host_end;
	const char *p;
	if (*s == '[') {
		host_end = strchr(s, ']');
		if (!host_end)
			return url_fail(why, "unterminated IPv6 address in URL");
		if ((size_t)(host_end - s - 1) >= sizeof(u->host))
			return url_fail(why, "host name too long");
		memcpy(u->host, s + 1, (size_t)(host_end - s - 1));
		p = host_end + 1;
	} else {
		p = s;
		while (*p && *p != ':' && *p != '/' && *p != '?' && *p != '#')
			p++;
		if ((size_t)(p - s) >= sizeof(u->host))
			return url_fail(why, "host name too long");
		memcpy(u->host, s, (size_t)(p - s));
	}
	if (u->host[0] == '\0')
		return url_fail(why, "URL has no host");
	for (const char *c = u->host; *c; c++)
		if (!isalnum((unsigned char)*c) && !strchr(".-_:%", *c))
			return url_fail(why, "invalid character in URL host");
	bool explicit_port = false;
	if (*p == ':') {
		/* Digits only (RFC 3986 3.2.3): strtol alone would take
		 * leading blanks (even CR/LF) and a sign. */
		if (!isdigit((unsigned char)p[1]))
			return url_fail(why, "invalid port in URL");
		char *end;
		long port = strtol(p + 1, &end, 10);
		if (end == p + 1 || port <= 0 || port > 65535)
			return url_fail(why, "invalid port in URL");
		u->port = (uint16_t)port;
		explicit_port = true;
		p = end;
	}
	if (*p && *p != '/')
		return url_fail(why, "URL may not carry a query or fragment");
	size_t plen = strlen(p);
	while (plen > 0 && p[plen - 1] == '/')
		plen--; /* "/v1/" and "/v1" name the same prefix */
	if (plen >= sizeof(u->path))
		return url_fail(why, "URL path too long");
	for (size_t i = 0; i < plen; i++)
		if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f || p[i] == '?' || p[i] == '#')
			return url_fail(why, "invalid character in URL path");
	memcpy(u->path, p, plen);
	u->path[plen] = '\0';

	bool v6 = strchr(u->host, ':') != NULL;
	bool default_port = (u->https && u->port == 443) || (!u->https && u->port == 80);
	snprintf(u->host_header, sizeof(u->host_header), "%s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "");
	if (explicit_port && !default_port) {
		size_t n = strlen(u->host_header);
		snprintf(u->host_header + n, sizeof(u->host_header) - n, ":%u", u->port);
	}
	url_resolve_numeric(u);
	return 0;
}

bool url_same_origin(const struct url *a, const struct url *b)
{
	return a->https == b->https && a->port == b->port && strcasecmp(a->host, b->host) == 0;
}

void url_redact(const char *in, char *out, size_t cap)
{
	if (!cap)
		return;
	const char *rest = in;
	size_t scheme = strncasecmp(in, "http://", 7) == 0 ? 7 : strncasecmp(in, "https://", 8) == 0 ? 8 : 0;
	const char *authority = in + scheme;
	size_t alen = strcspn(authority, "/?#");
	const char *at = NULL;
	for (size_t i = 0; i < alen; i++)
		if (authority[i] == '@')
			at = authority + i; /* the last one ends the userinfo */
	if (!at) {
		snprintf(out, cap, "%s", in);
		return;
	}
	rest = at + 1;
	snprintf(out, cap, "%.*s***@%s", (int)scheme, in, rest);
}
