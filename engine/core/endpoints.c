/*
 * Endpoints and keys: where each provider's requests go and the headers
 * every request to it carries, from lr_config and the environment (read
 * in lr_engine_create, on the caller's thread).
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
	if (ep->auth_headers.data)
		memset(ep->auth_headers.data, 0, ep->auth_headers.cap);
	buf_free(&ep->auth_headers);
}

int endpoints_init(struct lr_engine *e, const char *cfg_base, const char *cfg_key)
{
	for (int p = 0; p < PROVIDER_COUNT; p++) {
		struct endpoint *ep = &e->ep[p];
		struct provider_endpoint src;
		ep->err.code = provider_endpoint_resolve((enum provider)p, cfg_base, cfg_key, &src,
		                                         ep->err.message, sizeof(ep->err.message));
		if (ep->err.code)
			continue;
		ep->needs_key = src.needs_key;
		const char *why = NULL;
		int ret = url_parse(src.base, &ep->url, &why);
		if (ret) {
			error_set(&ep->err, ret, 0, "%s base URL: %s", provider_row((enum provider)p)->name,
			          why ? why : "invalid");
			if (p == PROVIDER_OPENAI)
				return ret; /* the default provider must work */
			continue;
		}
		ret = build_fixed_headers(&ep->fixed_headers, (enum provider)p, src.key);
		if (!ret)
			ret = provider_auth_headers((enum provider)p, &ep->auth_headers, src.key);
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
		struct provider_endpoint src;
		struct url u;
		const char *url_why = NULL;
		if (!name_len) {
			ret = LR_EINVAL;
			snprintf(text, sizeof(text), "the model name after \"%s/\" is empty", provider_row(p)->name);
		} else if ((ret = provider_endpoint_resolve(p, cfg ? cfg->base_url : NULL, cfg ? cfg->api_key : NULL, &src,
		                                  text, sizeof(text)))) {
		} else if ((ret = url_parse(src.base, &u, &url_why))) {
			char shown[200];
			url_redact(src.base, shown, sizeof(shown));
			snprintf(text, sizeof(text), "%s base URL %.120s: %s", provider_row(p)->name, shown,
			         url_why ? url_why : "invalid");
		} else if (src.needs_key) {
			ret = LR_EAUTH;
			snprintf(text, sizeof(text), "%s is not set; %s needs a key", provider_row(p)->key_env,
			         src.base);
		}
	}
	if (why && why_len)
		snprintf(why, why_len, "%s", text);
	return ret;
}
