/* engine/io/url: url_parse, url_redact and url_same_origin as pure
 * functions (no network: numeric hosts and localhost resolve in place). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "io/url.h"
#include "llmring.h"

static struct url u;

static void parse_ok(const char *s)
{
	const char *why = "untouched";
	int rc = url_parse(s, &u, &why);
	if (rc != 0)
		fail_msg("url_parse(\"%s\") = %d: %s", s, rc, why);
}

static void parse_bad(const char *s)
{
	const char *why = NULL;
	int rc = url_parse(s, &u, &why);
	if (rc != LR_EINVAL)
		fail_msg("url_parse(\"%s\") = %d, want LR_EINVAL", s ? s : "(null)", rc);
	assert_non_null(why);
	assert_true(strlen(why) > 0);
}

static void schemes_and_default_ports(void **state)
{
	(void)state;
	parse_ok("http://example.com");
	assert_false(u.https);
	assert_int_equal(u.port, 80);
	assert_string_equal(u.host, "example.com");
	assert_string_equal(u.host_header, "example.com");
	assert_string_equal(u.path, "");
	assert_false(u.resolved);

	parse_ok("https://api.example.com/v1");
	assert_true(u.https);
	assert_int_equal(u.port, 443);
	assert_string_equal(u.host, "api.example.com");
	assert_string_equal(u.host_header, "api.example.com");
	assert_string_equal(u.path, "/v1");

	/* The scheme is case-insensitive (RFC 3986 3.1). */
	parse_ok("HTTPS://Example.com/");
	assert_true(u.https);
	assert_int_equal(u.port, 443);

	parse_bad("ftp://example.com/");
	parse_bad("example.com");
	parse_bad("http:/example.com");
	parse_bad("");
	/* NULL is refused too, with a reason. */
	parse_bad(NULL);
	/* why may be NULL. */
	assert_int_equal(url_parse("ftp://x", &u, NULL), LR_EINVAL);
}

static void explicit_ports(void **state)
{
	(void)state;
	parse_ok("http://h:8080");
	assert_int_equal(u.port, 8080);
	assert_string_equal(u.host_header, "h:8080");
	parse_ok("http://h:1/");
	assert_int_equal(u.port, 1);
	parse_ok("https://h:65535/v1");
	assert_int_equal(u.port, 65535);
	assert_string_equal(u.host_header, "h:65535");
	assert_string_equal(u.path, "/v1");
	parse_ok("http://h:0080");
	assert_int_equal(u.port, 80);
	assert_string_equal(u.host_header, "h");

	/* The default port, written out, is not shown in Host. */
	parse_ok("http://h:80/");
	assert_string_equal(u.host_header, "h");
	parse_ok("https://h:443/");
	assert_string_equal(u.host_header, "h");
	/* The other scheme's default is not this one's. */
	parse_ok("https://h:80/");
	assert_int_equal(u.port, 80);
	assert_string_equal(u.host_header, "h:80");
	parse_ok("http://h:443/");
	assert_string_equal(u.host_header, "h:443");

	parse_bad("http://h:0");
	parse_bad("http://h:0/");
	parse_bad("http://h:65536");
	parse_bad("http://h:99999999999999999999999");
	parse_bad("http://h:-1");
	parse_bad("http://h:abc");
	parse_bad("http://h:80abc");
	parse_bad("http://h:80:90");
	parse_bad("http://h:/");
	parse_bad("http://h:");
	/* A port is digits only (RFC 3986 3.2.3): not strtol's leading
	 * blanks or sign. */
	parse_bad("http://h: 80");
	parse_bad("http://h:\t80/");
	parse_bad("http://h:+80");
	parse_bad("http://h:\r\n80");
}

static void ipv6_literals(void **state)
{
	(void)state;
	parse_ok("http://[::1]/v1/");
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 80);
	assert_string_equal(u.host_header, "[::1]");
	assert_string_equal(u.path, "/v1");
	assert_true(u.resolved);
	assert_int_equal(u.addr_len, sizeof(struct sockaddr_in6));
	const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&u.addr;
	assert_int_equal(a6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(a6->sin6_port), 80);
	assert_memory_equal(&a6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback));

	parse_ok("https://[2001:db8::7]:8443");
	assert_string_equal(u.host, "2001:db8::7");
	assert_int_equal(u.port, 8443);
	assert_string_equal(u.host_header, "[2001:db8::7]:8443");
	assert_string_equal(u.path, "");
	assert_true(u.resolved);
	a6 = (const struct sockaddr_in6 *)&u.addr;
	assert_int_equal(ntohs(a6->sin6_port), 8443);
	struct in6_addr want;
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", &want), 1);
	assert_memory_equal(&a6->sin6_addr, &want, sizeof(want));

	parse_ok("https://[::1]:443/");
	assert_string_equal(u.host_header, "[::1]");

	parse_bad("http://[::1/v1");
	parse_bad("http://[]/");
	parse_bad("http://[]:80/");
	parse_bad("http://[::1]x/");
	parse_bad("http://[::1]:0/");
	parse_bad("http://[::1]:65536/");
	parse_bad("http://[::1/x]/");
	parse_bad("http://[:: 1]/");
}

static void path_prefixes(void **state)
{
	(void)state;
	char a[sizeof(u.path)], b[sizeof(u.path)];
	parse_ok("http://h/v1/");
	strcpy(a, u.path);
	parse_ok("http://h/v1");
	strcpy(b, u.path);
	assert_string_equal(a, "/v1");
	assert_string_equal(a, b);
	parse_ok("http://h/v1//");
	assert_string_equal(u.path, "/v1");
	parse_ok("http://h/");
	assert_string_equal(u.path, "");
	parse_ok("http://h//");
	assert_string_equal(u.path, "");
	parse_ok("http://h:81");
	assert_string_equal(u.path, "");
	parse_ok("http://h/openai/v1/");
	assert_string_equal(u.path, "/openai/v1");
	/* An @ in the path is not userinfo. */
	parse_ok("http://h/a@b");
	assert_string_equal(u.path, "/a@b");

	parse_bad("http://h/v1?x=1");
	parse_bad("http://h?x=1");
	parse_bad("http://h#frag");
	parse_bad("http://h/v1#frag");
	parse_bad("http://h/v 1");
	parse_bad("http://h/v1\r\nX-Evil: 1");
	parse_bad("http://h/v1\n");
	parse_bad("http://h/v1\t");
	parse_bad("http://h/\x7f");
}

static void userinfo_refused(void **state)
{
	(void)state;
	parse_bad("http://user:pw@h/");
	parse_bad("https://user@h");
	parse_bad("http://@h/");
	parse_bad("http://user:pw@[::1]:8080/");
	parse_bad("http://a@b@h/");
}

static void hosts(void **state)
{
	(void)state;
	parse_bad("http:///v1");
	parse_bad("http://");
	parse_bad("https://:8080/");
	parse_bad("http://exa mple.com/");
	parse_bad("http://example.com\r\n/");
	parse_bad("http://exa\nmple.com");
	parse_bad("http://ex\"ample.com");
	parse_bad("http://ex<ample.com");
	parse_bad("http://ex\\ample.com");
	/* NUL cannot be in a C string: the host simply ends there. */
	parse_ok("http://ex\0ample.com");
	assert_string_equal(u.host, "ex");

	parse_ok("http://my-host_1.internal:9000/x");
	assert_string_equal(u.host, "my-host_1.internal");
	assert_false(u.resolved);

	/* 255 characters fit; 256 do not. */
	char s[64 + 2048];
	char host[300];
	memset(host, 'a', 255);
	host[255] = '\0';
	snprintf(s, sizeof(s), "http://%s:8080/", host);
	parse_ok(s);
	assert_int_equal(strlen(u.host), 255);
	assert_int_equal(strlen(u.host_header), 255 + 5);
	memset(host, 'a', 256);
	host[256] = '\0';
	snprintf(s, sizeof(s), "http://%s/", host);
	parse_bad(s);
	snprintf(s, sizeof(s), "http://[%s]/", host);
	parse_bad(s);
	/* The longest IPv6-bracketed host and port fit in Host. */
	memset(host, '1', 255);
	host[3] = ':';
	host[255] = '\0';
	snprintf(s, sizeof(s), "https://[%s]:65535/", host);
	parse_ok(s);
	assert_int_equal(strlen(u.host_header), 255 + 2 + 6);
	assert_int_equal(u.host_header[0], '[');
}

static void long_paths(void **state)
{
	(void)state;
	char s[2048];
	/* "/" + 1022 = 1023 characters fit. */
	strcpy(s, "http://h/");
	size_t n = strlen(s);
	memset(s + n, 'p', 1022);
	s[n + 1022] = '\0';
	parse_ok(s);
	assert_int_equal(strlen(u.path), 1023);
	/* Trailing slashes do not count. */
	strcat(s, "///");
	parse_ok(s);
	assert_int_equal(strlen(u.path), 1023);
	s[n + 1022] = 'p';
	s[n + 1023] = '\0';
	parse_bad(s);
}

static void numeric_hosts_resolved(void **state)
{
	(void)state;
	parse_ok("http://127.0.0.1:8080/v1");
	assert_true(u.resolved);
	assert_int_equal(u.addr_len, sizeof(struct sockaddr_in));
	const struct sockaddr_in *a4 = (const struct sockaddr_in *)&u.addr;
	assert_int_equal(a4->sin_family, AF_INET);
	assert_int_equal(ntohs(a4->sin_port), 8080);
	assert_int_equal(ntohl(a4->sin_addr.s_addr), 0x7f000001);

	parse_ok("https://10.1.2.3");
	assert_true(u.resolved);
	a4 = (const struct sockaddr_in *)&u.addr;
	assert_int_equal(ntohs(a4->sin_port), 443);
	assert_int_equal(ntohl(a4->sin_addr.s_addr), 0x0a010203);

	parse_ok("http://localhost:11434");
	assert_true(u.resolved);
	assert_string_equal(u.host, "localhost");
	assert_string_equal(u.host_header, "localhost:11434");
	a4 = (const struct sockaddr_in *)&u.addr;
	assert_int_equal(a4->sin_family, AF_INET);
	assert_int_equal(ntohs(a4->sin_port), 11434);
	assert_int_equal(ntohl(a4->sin_addr.s_addr), 0x7f000001);

	parse_ok("http://LocalHost/");
	assert_true(u.resolved);
	a4 = (const struct sockaddr_in *)&u.addr;
	assert_int_equal(ntohs(a4->sin_port), 80);

	/* Names are left to the resolver. */
	parse_ok("http://example.com:8080");
	assert_false(u.resolved);
	parse_ok("http://localhost.example.com");
	assert_false(u.resolved);
	parse_ok("http://1.2.3");
	assert_false(u.resolved);
}

static void redact(void **state)
{
	(void)state;
	char out[128];
	url_redact("http://user:pw@h:8080/v1", out, sizeof(out));
	assert_string_equal(out, "http://***@h:8080/v1");
	url_redact("https://key@api.example.com", out, sizeof(out));
	assert_string_equal(out, "https://***@api.example.com");
	/* The last @ of the authority ends the userinfo. */
	url_redact("http://a@b:c@h/", out, sizeof(out));
	assert_string_equal(out, "http://***@h/");
	/* An @ after the authority is not userinfo. */
	url_redact("http://h/a@b", out, sizeof(out));
	assert_string_equal(out, "http://h/a@b");
	url_redact("http://h?x=a@b", out, sizeof(out));
	assert_string_equal(out, "http://h?x=a@b");
	url_redact("https://api.example.com/v1", out, sizeof(out));
	assert_string_equal(out, "https://api.example.com/v1");
	url_redact("user:pw@h/v1", out, sizeof(out));
	assert_string_equal(out, "***@h/v1");
	url_redact("", out, sizeof(out));
	assert_string_equal(out, "");

	/* Truncated to cap, always terminated, never past cap. */
	char small[12];
	memset(small, 'X', sizeof(small));
	url_redact("http://user:pw@h/v1", small, 10);
	assert_string_equal(small, "http://**");
	assert_int_equal(small[10], 'X');
	memset(small, 'X', sizeof(small));
	url_redact("http://example.com/", small, 8);
	assert_string_equal(small, "http://");
	assert_int_equal(small[8], 'X');
	memset(small, 'X', sizeof(small));
	url_redact("http://u@h", small, 1);
	assert_int_equal(small[0], '\0');
	assert_int_equal(small[1], 'X');
	memset(small, 'X', sizeof(small));
	url_redact("http://u@h", small, 0);
	assert_int_equal(small[0], 'X');
}

static void same_origin(void **state)
{
	(void)state;
	struct url a, b;
	assert_int_equal(url_parse("https://api.example.com/v1", &a, NULL), 0);
	assert_int_equal(url_parse("https://api.example.com:443/other/", &b, NULL), 0);
	assert_true(url_same_origin(&a, &b));
	assert_true(url_same_origin(&b, &a));
	assert_true(url_same_origin(&a, &a));
	/* Hosts compare case-insensitively (RFC 3986 3.2.2, 6.2.2.1). */
	assert_int_equal(url_parse("HTTPS://API.Example.COM", &b, NULL), 0);
	assert_true(url_same_origin(&a, &b));
	/* Scheme. */
	assert_int_equal(url_parse("http://api.example.com:443/v1", &b, NULL), 0);
	assert_false(url_same_origin(&a, &b));
	/* Port. */
	assert_int_equal(url_parse("https://api.example.com:8443/v1", &b, NULL), 0);
	assert_false(url_same_origin(&a, &b));
	/* Host. */
	assert_int_equal(url_parse("https://api.example.org/v1", &b, NULL), 0);
	assert_false(url_same_origin(&a, &b));
	assert_int_equal(url_parse("https://api.example.co/v1", &b, NULL), 0);
	assert_false(url_same_origin(&a, &b));
	/* IPv6. */
	assert_int_equal(url_parse("http://[FE80::1]:8080", &a, NULL), 0);
	assert_int_equal(url_parse("http://[fe80::1]:8080/x", &b, NULL), 0);
	assert_true(url_same_origin(&a, &b));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(schemes_and_default_ports),
		cmocka_unit_test(explicit_ports),
		cmocka_unit_test(ipv6_literals),
		cmocka_unit_test(path_prefixes),
		cmocka_unit_test(userinfo_refused),
		cmocka_unit_test(hosts),
		cmocka_unit_test(long_paths),
		cmocka_unit_test(numeric_hosts_resolved),
		cmocka_unit_test(redact),
		cmocka_unit_test(same_origin),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
