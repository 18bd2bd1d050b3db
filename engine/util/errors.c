/* Error names and descriptions for the LR_E* codes of llmring.h. */
#include "util/errors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "llmring.h"

struct error_entry {
	const char *name;
	const char *text;
};

/* Indexed by -code, from the one list in llmring.h. */
static const struct error_entry error_table[] = {
	[0] = {"ok", "success"},
#define ERROR_ENTRY(code, value, name, text) [-(value)] = {name, text},
	LR_ERRNO_MAP(ERROR_ENTRY)
#undef ERROR_ENTRY
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
	return e && e->text ? e->text : "unknown error";
}

LR_API const char *lr_error_name(int err)
{
	const struct error_entry *e = error_lookup(err);
	return e && e->name ? e->name : "unknown_error";
}

LR_API const char *lr_version(void)
{
	return LR_VERSION_STRING;
}

int error_vset(struct error_info *err, int code, int sys_errno, const char *fmt, va_list ap)
{
	if (!err)
		return code;
	err->code = code;
	err->sys_errno = sys_errno;
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	return code;
}

int error_set(struct error_info *err, int code, int sys_errno, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	error_vset(err, code, sys_errno, fmt, ap);
	va_end(ap);
	return code;
}

int error_copy(struct error_info *dst, const struct error_info *src)
{
	if (dst && dst != src)
		memcpy(dst, src, sizeof(*dst));
	return src->code;
}

void error_clear(struct error_info *err)
{
	err->code = err->sys_errno = 0;
	err->message[0] = '\0';
}

void error_export(lr_error_info *out, const struct error_info *err)
{
	if (!out)
		return;
	out->code = err->code;
	out->sys_errno = err->sys_errno;
	/* Cut where formatting into the public size would have cut. */
	size_t n = strnlen(err->message, sizeof(out->message) - 1);
	memcpy(out->message, err->message, n);
	out->message[n] = '\0';
}

int error_from_errno(int neg_errno)
{
	return neg_errno == -ENOMEM || neg_errno == -EAGAIN ? LR_ENOMEM : LR_ESYSTEM;
}
