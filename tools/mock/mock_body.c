/*
 * Reading the raw JSON request body without parsing it: key scanners and
 * what mock_dispatch asks of them (model, stream, max tokens, tools, prompt
 * words, embedding inputs). Like the request parser, none of this is the
 * engine's code.
 *
 * Token counting (documented for users of the mock's usage numbers):
 *   - prompt tokens: whitespace-separated words in every JSON string value
 *     of a "content" key anywhere in the request body (Anthropic: also of
 *     "text" and "system" keys; Gemini: of "text" keys only; embeddings: in
 *     the "input" strings, a token-array input counts its numbers). Words
 *     are counted in the escaped JSON text, where the escapes \n \t \r
 *     count as whitespace.
 *   - completion tokens: the words generated; the reply text is that many
 *     words from a fixed 64-word list, picked by a hash of (seed, request
 *     number, word index), joined by single spaces. Streaming sends one
 *     word per event (" word" after the first). A tool call counts
 *     TOOL_FRAGS tokens.
 */
#include "mock_internal.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* memmem for the short keys searched in request bodies (every request pays
 * for several whole-body searches). With SSE2, 16 start positions at a time
 * are filtered on the key's second and second-to-last bytes (the first and
 * last are often both '"'), then candidates are compared. */
const char *mock_key_find(const char *h, size_t n, const char *k, size_t kl)
{
#ifdef __SSE2__
	size_t i = 0;
	if (kl >= 4) {
		const __m128i c1 = _mm_set1_epi8(k[1]), c2 = _mm_set1_epi8(k[kl - 2]);
		for (; i + kl + 15 <= n; i += 16) {
			__m128i a = _mm_loadu_si128((const __m128i *)(const void *)(h + i + 1));
			__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(h + i + kl - 2));
			unsigned mask = (unsigned)_mm_movemask_epi8(
				_mm_and_si128(_mm_cmpeq_epi8(a, c1), _mm_cmpeq_epi8(b, c2)));
			while (mask) {
				const char *m = h + i + __builtin_ctz(mask);
				if (memcmp(m, k, kl) == 0)
					return m;
				mask &= mask - 1;
			}
		}
	}
	/* The tail: a short plain loop (glibc memmem sets up a table per call). */
	for (; i + kl <= n; i++)
		if (h[i] == k[0] && memcmp(h + i, k, kl) == 0)
			return h + i;
	return NULL;
#else
	return memmem(h, n, k, kl);
#endif
}

/* p just after an opening quote; returns the closing quote or NULL. */
static const char *str_end(const char *p, const char *end)
{
	while (p < end) {
		const char *q = memchr(p, '"', (size_t)(end - p));
		if (!q)
			return NULL;
		size_t bs = 0;
		for (const char *b = q - 1; b >= p && *b == '\\'; b--)
			bs++;
		if ((bs & 1) == 0)
			return q;
		p = q + 1;
	}
	return NULL;
}

/* After a match of "key" (with quotes) at p: the value after ':' or NULL. */
static const char *after_colon(const char *p, const char *end)
{
	while (p < end && is_ws(*p))
		p++;
	if (p >= end || *p != ':')
		return NULL;
	p++;
	while (p < end && is_ws(*p))
		p++;
	return p < end ? p : NULL;
}

/* First value of "key" (key given with its quotes). */
const char *mock_find_value(const char *b, const char *end, const char *qkey)
{
	size_t kl = strlen(qkey);
	const char *p = b;
	while (p < end) {
		const char *m = mock_key_find(p, (size_t)(end - p), qkey, kl);
		if (!m)
			return NULL;
		const char *v = after_colon(m + kl, end);
		if (v)
			return v;
		p = m + kl;
	}
	return NULL;
}

static unsigned count_words(const char *p, const char *end)
{
	unsigned n = 0;
	bool in_word = false;
	while (p < end) {
		bool ws;
		if (*p == '\\' && p + 1 < end) {
			ws = p[1] == 'n' || p[1] == 't' || p[1] == 'r';
			p += 2;
		} else {
			ws = is_ws(*p);
			p++;
		}
		if (!ws && !in_word)
			n++;
		in_word = !ws;
	}
	return n;
}

/* Words in every string value of qkey (given with its quotes). */
static unsigned count_key_words(const char *b, const char *end, const char *qkey, size_t kl)
{
	unsigned n = 0;
	const char *p = b;
	while (p < end) {
		const char *m = mock_key_find(p, (size_t)(end - p), qkey, kl);
		if (!m)
			break;
		p = m + kl;
		const char *v = after_colon(p, end);
		if (!v || *v != '"')
			continue;
		const char *e = str_end(v + 1, end);
		if (!e)
			break;
		n += count_words(v + 1, e);
		p = e + 1;
	}
	return n;
}

#define COUNT_KEY_WORDS(b, end, lit) count_key_words((b), (end), (lit), sizeof(lit) - 1)

static unsigned count_content_words(const char *b, const char *end)
{
	return COUNT_KEY_WORDS(b, end, "\"content\"");
}

/* Does some value of qkey (with quotes) equal the string want (no quotes)? */
static bool has_str_value(const char *b, const char *end, const char *qkey, const char *want)
{
	size_t kl = strlen(qkey), wl = strlen(want);
	const char *p = b;
	while (p < end) {
		const char *m = mock_key_find(p, (size_t)(end - p), qkey, kl);
		if (!m)
			return false;
		p = m + kl;
		const char *v = after_colon(p, end);
		if (v && *v == '"' && (size_t)(end - v) > wl + 1 && memcmp(v + 1, want, wl) == 0 &&
		    v[1 + wl] == '"')
			return true;
	}
	return false;
}

static bool value_is_false(const char *v, const char *end)
{
	return v && end - v >= 5 && memcmp(v, "false", 5) == 0;
}

bool mock_value_is_true(const char *v, const char *end)
{
	return v && end - v >= 4 && memcmp(v, "true", 4) == 0;
}

static bool value_uint(const char *v, const char *end, uint64_t *out)
{
	if (!v || v >= end || *v < '0' || *v > '9')
		return false;
	uint64_t x = 0;
	while (v < end && *v >= '0' && *v <= '9') {
		if (x > UINT32_MAX)
			break;
		x = x * 10 + (uint64_t)(*v - '0');
		v++;
	}
	*out = x;
	return true;
}

/* Counts the inputs of qkey and their words (embeddings, completions). */
void mock_scan_inputs(const char *b, const char *end, const char *qkey, unsigned *ninputs,
		      unsigned *ntokens)
{
	*ninputs = 0;
	*ntokens = 0;
	const char *v = mock_find_value(b, end, qkey);
	if (!v)
		return;
	if (*v == '"') {
		const char *e = str_end(v + 1, end);
		*ninputs = 1;
		*ntokens = e ? count_words(v + 1, e) : 0;
		return;
	}
	if (*v != '[')
		return;
	const char *p = v + 1;
	bool numbers = false;
	while (p < end && *p != ']') {
		if (*p == '"') {
			const char *e = str_end(p + 1, end);
			if (!e)
				return;
			(*ninputs)++;
			*ntokens += count_words(p + 1, e);
			p = e + 1;
		} else if (*p == '[') {
			(*ninputs)++;
			p++;
			while (p < end && *p != ']') {
				if ((*p >= '0' && *p <= '9')) {
					(*ntokens)++;
					while (p < end && *p >= '0' && *p <= '9')
						p++;
				} else {
					p++;
				}
			}
			if (p < end)
				p++;
		} else if (*p >= '0' && *p <= '9') {
			numbers = true;
			(*ntokens)++;
			while (p < end && *p >= '0' && *p <= '9')
				p++;
		} else {
			p++;
		}
	}
	if (numbers && *ninputs == 0)
		*ninputs = 1; /* one token array */
}

/* Copies the JSON string contents at v (its opening quote) into dst, at most
 * cap - 8 bytes, never splitting an escape or a UTF-8 character, raw
 * control characters made spaces and bytes that are not UTF-8 '?'.
 * Returns the length, or -1 when v is not a complete string. */
static long copy_str(char *dst, size_t cap, const char *v, const char *end)
{
	const char *e = v && *v == '"' ? str_end(v + 1, end) : NULL;
	if (!e)
		return -1;
	const char *s = v + 1;
	size_t n = (size_t)(e - s), o = 0;
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)s[i];
		size_t l = 1;
		char rep = 0;
		if (ch == '\\')
			l = i + 1 < n && s[i + 1] == 'u' ? 6 : 2;
		else if (ch < 0x20)
			rep = ' '; /* raw control chars are invalid JSON */
		else if (ch >= 0x80 && (l = mock_utf8_len(s + i, n - i)) == 0)
			l = 1, rep = '?';
		if (i + l > n || o + l > cap - 8)
			break;
		if (rep)
			dst[o] = rep;
		else
			memcpy(dst + o, s + i, l);
		o += l;
		i += l;
	}
	return (long)o;
}

void mock_copy_model(struct job *j, const char *b, const char *end)
{
	long n = copy_str(j->model, MODEL_MAX, mock_find_value(b, end, "\"model\""), end);
	if (n < 0) {
		memcpy(j->model, "mock", 4);
		n = 4;
	}
	j->model_len = (size_t)n;
}

/* Gemini: the model named in the path (raw URL text, made JSON-safe: no
 * quote, backslash, control character or byte that is not UTF-8). */
void mock_copy_path_model(struct job *j, const char *p, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)p[i];
		size_t l = 1;
		bool bad = ch < 0x20 || ch == '"' || ch == '\\';
		if (ch >= 0x80 && (l = mock_utf8_len(p + i, n - i)) == 0)
			l = 1, bad = true;
		if (o + l > MODEL_MAX - 8)
			break;
		if (bad)
			j->model[o] = '_';
		else
			memcpy(j->model + o, p + i, l);
		o += l;
		i += l;
	}
	j->model_len = o;
}

/* Tool calls: a "tools" key naming a function and no tool result yet. Sets
 * j->tool and j->tool_name. */
void mock_find_tool(struct job *j, const char *body, const char *end)
{
	const char *t = mock_find_value(body, end, "\"tools\"");
	if (!t)
		return;
	switch (j->dialect) {
	case D_ANTHROPIC:
		if (mock_key_find(body, (size_t)(end - body), "\"tool_result\"", 13))
			return;
		break;
	case D_GEMINI: {
		if (mock_key_find(body, (size_t)(end - body), "\"functionResponse\"", 18))
			return;
		const char *fd = mock_find_value(t, end, "\"functionDeclarations\"");
		if (fd)
			t = fd;
		break;
	}
	default:
		if (has_str_value(body, end, "\"role\"", "tool"))
			return;
		break;
	}
	long n = copy_str(j->tool_name, TOOL_NAME_MAX, mock_find_value(t, end, "\"name\""), end);
	if (n <= 0)
		return;
	j->tool_name_len = (size_t)n;
	j->tool = true;
}

/* Does this request ask for a stream? */
bool mock_wants_stream(const struct req *rq, const char *body, const char *end)
{
	switch (rq->route) {
	case R_CHAT:
	case R_COMPLETIONS:
	case R_ANTHROPIC:
		return mock_value_is_true(mock_find_value(body, end, "\"stream\""), end);
	case R_OLLAMA_CHAT: /* Ollama streams unless told not to */
		return !value_is_false(mock_find_value(body, end, "\"stream\""), end);
	case R_GEMINI_STREAM:
		return true;
	default:
		return false;
	}
}

/* The dialect's max-token field, when present. */
bool mock_max_tokens(uint8_t dialect, const char *body, const char *end, uint64_t *mt)
{
	switch (dialect) {
	case D_ANTHROPIC:
		return value_uint(mock_find_value(body, end, "\"max_tokens\""), end, mt);
	case D_OLLAMA:
		return value_uint(mock_find_value(body, end, "\"num_predict\""), end, mt);
	case D_GEMINI:
		return value_uint(mock_find_value(body, end, "\"maxOutputTokens\""), end, mt);
	default:
		return value_uint(mock_find_value(body, end, "\"max_completion_tokens\""), end, mt) ||
		       value_uint(mock_find_value(body, end, "\"max_tokens\""), end, mt);
	}
}

unsigned mock_prompt_words(uint8_t dialect, const char *body, const char *end)
{
	switch (dialect) {
	case D_ANTHROPIC:
		return count_content_words(body, end) + COUNT_KEY_WORDS(body, end, "\"text\"") +
		       COUNT_KEY_WORDS(body, end, "\"system\"");
	case D_GEMINI:
		return COUNT_KEY_WORDS(body, end, "\"text\"");
	default:
		return count_content_words(body, end);
	}
}


int mock_body_fault(const char *b, const char *end)
{
	const char *m = mock_key_find(b, (size_t)(end - b), "mock-fault:", 11);
	if (!m)
		return -1;
	const char *q = m + 11, *qe = q;
	while (qe < end && (((*qe | 32) >= 'a' && (*qe | 32) <= 'z') ||
			    (*qe >= '0' && *qe <= '9') || *qe == '-'))
		qe++;
	return mock_fault_from_mem(q, (size_t)(qe - q));
}
