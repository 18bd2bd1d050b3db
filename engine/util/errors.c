/* Error names and descriptions for the LR_E* codes of llmring.h. */
#include "llmring.h"

struct error_entry {
	const char *name;
	const char *text;
};

/* Indexed by -code. Names are the stable codes of batch output. */
static const struct error_entry error_table[] = {
	[0] = {"ok", "success"},
	[-LR_EINVAL] = {"invalid_input", "invalid argument or request"},
	[-LR_ENOMEM] = {"out_of_memory", "out of memory"},
	[-LR_EDUPLICATE] = {"duplicate_custom_id", "duplicate custom_id"},
	[-LR_EAUTH] = {"auth_error", "authentication failed (HTTP 401)"},
	[-LR_EPERMISSION] = {"permission_denied", "permission denied (HTTP 403)"},
	[-LR_ENOTFOUND] = {"not_found", "not found (HTTP 404)"},
	[-LR_EBADREQUEST] = {"bad_request", "bad request"},
	[-LR_ECONTEXT] = {"context_length_exceeded", "context length exceeded"},
	[-LR_ERATELIMIT] = {"rate_limited", "rate limited (HTTP 429)"},
	[-LR_EQUOTA] = {"insufficient_quota", "insufficient quota"},
	[-LR_EOVERLOADED] = {"overloaded", "server overloaded"},
	[-LR_ESERVER] = {"server_error", "server error"},
	[-LR_ECONNECT] = {"connect_error", "could not connect"},
	[-LR_ECONNRESET] = {"connection_reset", "connection reset by peer"},
	[-LR_ETIMEOUT] = {"timeout", "deadline exceeded"},
	[-LR_EPROTO] = {"protocol_error", "malformed response"},
	[-LR_ETOOLARGE] = {"response_too_large", "response too large"},
	[-LR_ETLS_UNTRUSTED] = {"tls_untrusted", "TLS certificate not trusted"},
	[-LR_ETLS_NAME] = {"tls_name_mismatch", "TLS certificate name mismatch"},
	[-LR_ETLS_EXPIRED] = {"tls_expired", "TLS certificate expired"},
	[-LR_ETLS_HANDSHAKE] = {"tls_handshake", "TLS handshake failed"},
	[-LR_ECANCELLED] = {"cancelled", "cancelled"},
	[-LR_EHTTP] = {"http_error", "HTTP error status"},
	[-LR_EUNSUPPORTED] = {"unsupported", "not supported in this build"},
	[-LR_ESYSTEM] = {"system_error", "system error"},
	[-LR_EIO] = {"io_error", "I/O error"},
};

static const struct error_entry *error_lookup(int err)
{
	if (err > 0 || -err >= (int)(sizeof(error_table) / sizeof(error_table[0])))
		return NULL;
	return &error_table[-err];
}

LR_API const char *lr_strerror(int err)
{
	const struct error_entry *e = error_lookup(err);
	return e ? e->text : "unknown error";
}

LR_API const char *lr_error_name(int err)
{
	const struct error_entry *e = error_lookup(err);
	return e ? e->name : "unknown_error";
}

LR_API const char *lr_version(void)
{
	return LR_VERSION_STRING;
}
