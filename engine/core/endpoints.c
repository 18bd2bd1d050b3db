/*
 * Endpoints and keys: where each provider's requests go and the headers
 * every request to it carries, from lr_config and the environment (read
 * in lr_engine_new, on the caller's thread).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine_internal.h"
#include "util/errors.h"
#include "http/http_writer.h"
#include "io/url.h"
#include "provider/provider.h"
#include "llmring.h"

static int append_header(struct buf *b, const char *name, const char *value)
{
	return http_write_header(b, name, strlen(name), value, strlen(value));
}

/* The key and content headers of one provider's requests (Host comes with
 * the request line, from the URL the request goes to). */
int build_fixed_headers(struct buf *b, enum provider p, const char *api_key)
{
	int ret = provider_auth_headers(p, b, api_key);
	if (!ret)
		ret = append_header(b, "Content-Type", "application/json");
	if (!ret)
		ret = append_header(b, "Accept", "application/json");
	if (!ret) /* bodies are parsed as they are: never compressed */
		ret = append_header(b, "Accept-Encoding", "identity");
	if (!ret)
		ret = append_header(b, "User-Agent", "llmring/" LR_VERSION_STRING);
	return ret;
}

void endpoint_wipe(struct endpoint *ep)
{
	if (ep->fixed_headers.data)
		memset(ep->fixed_headers.data, 0, ep->fixed_headers.cap);
	buf_free(&ep->fixed_headers);
}

/* OLLAMA_HOST may be "host", "host:port" or a URL, as the Ollama CLI takes it. */
static const char *ollama_url(const char *v, char *buf, size_t cap)
{
	if (strstr(v, "://"))
		return v;
	const char *host = strncmp(v, "0.0.0.0", 7) == 0 ? "127.0.0.1" : NULL;
	const char *rest = host ? v + 7 : v;
	bool port = strchr(host ? rest : v, ':') != NULL;
	snprintf(buf, cap, "http://%s%s%s", host ? host : "", rest, port ? "" : ":11434");
	return buf;
}

/* Where provider p's requests go: the configured base URL and key apply
 * to every provider; otherwise the provider's own variables and defaults.
 * 0, or LR_EINVAL with why (no base URL for mock/). */
struct endpoint_source {
	const char *base;       /* borrowed: cfg, the environment, a default or buf */
	const char *key;        /* borrowed: cfg or the environment; NULL: none */
	bool needs_key;         /* the provider's own endpoint and its key is missing */
	char buf[600];
};

static int endpoint_source(const char *cfg_base, const char *cfg_key, enum provider p,
                           struct endpoint_source *src, char *why, size_t why_len)
{
	const struct provider_info *pi = provider_info(p);
	src->base = cfg_base && cfg_base[0] ? cfg_base : NULL;
	src->key = cfg_key && cfg_key[0] ? cfg_key : NULL;
	src->needs_key = false;
	bool own_endpoint = !src->base;
	if (!src->base && pi->base_env) {
		const char *v = getenv(pi->base_env);
		if (v && v[0])
			src->base = p == PROVIDER_OLLAMA ? ollama_url(v, src->buf, sizeof(src->buf)) : v;
	}
	bool public_endpoint = !src->base;
	if (!src->base)
		src->base = pi->base_url;
	if (!src->base) {
		snprintf(why, why_len, "%s/ models need a base URL (lr_config.base_url or %s)", pi->name,
		         pi->base_env);
		return LR_EINVAL;
	}
	/* No key given: each provider's own variable, also under a base URL
	 * (a mixed batch must never send one provider's key to another). */
	if (!src->key && pi->key_env) {
		const char *k = getenv(pi->key_env);
		src->key = k && k[0] ? k : NULL;
		/* Only the public endpoint needs one: a server named by the
		 * variable may be a local one that takes none. */
		src->needs_key = !src->key && public_endpoint && own_endpoint;
	}
	return 0;
}

int endpoints_init(struct lr_engine *e, const char *cfg_base, const char *cfg_key)
{
	for (int p = 0; p < PROVIDER_COUNT; p++) {
		struct endpoint *ep = &e->ep[p];
		struct endpoint_source src;
		ep->err.code = endpoint_source(cfg_base, cfg_key, (enum provider)p, &src, ep->err.message,
		                               sizeof(ep->err.message));
		if (ep->err.code)
			continue;
		ep->needs_key = src.needs_key;
		const char *why = NULL;
		int ret = url_parse(src.base, &ep->url, &why);
		if (ret) {
			error_set(&ep->err, ret, 0, "%s base URL: %s", provider_info((enum provider)p)->name,
			          why ? why : "invalid");
			if (p == PROVIDER_OPENAI)
				return ret; /* the default provider must work */
			continue;
		}
		ret = build_fixed_headers(&ep->fixed_headers, (enum provider)p, src.key);
		if (ret)
			return ret;
	}
	return 0;
}

LR_API int lr_config_check_model(const lr_config *cfg, const char *model, char *why, size_t why_len)
{
	char text[200] = "";
	int ret = 0;
	if (!model) {
		ret = LR_EINVAL;
		snprintf(text, sizeof(text), "no model");
	} else {
		const char *name;
		size_t name_len;
		enum provider p = provider_route(model, strlen(model), &name, &name_len);
		struct endpoint_source src;
		struct url u;
		const char *url_why = NULL;
		if (!name_len) {
			ret = LR_EINVAL;
			snprintf(text, sizeof(text), "the model name after \"%s/\" is empty", provider_info(p)->name);
		} else if ((ret = endpoint_source(cfg ? cfg->base_url : NULL, cfg ? cfg->api_key : NULL, p, &src,
		                                  text, sizeof(text)))) {
		} else if ((ret = url_parse(src.base, &u, &url_why))) {
			char shown[200];
			url_redact(src.base, shown, sizeof(shown));
			snprintf(text, sizeof(text), "%s base URL %.120s: %s", provider_info(p)->name, shown,
			         url_why ? url_why : "invalid");
		} else if (src.needs_key) {
			ret = LR_EAUTH;
			snprintf(text, sizeof(text), "%s is not set; %s needs a key", provider_info(p)->key_env,
			         src.base);
		}
	}
	if (why && why_len)
		snprintf(why, why_len, "%s", text);
	return ret;
}
