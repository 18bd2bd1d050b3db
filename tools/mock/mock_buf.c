/*
 * The mock's byte buffer (struct mock_buf, mock_internal.h) and what the
 * mock generates into one whatever the dialect: JSON escapes of echoed
 * text, the reply words and the embedding vectors.
 */
#include "mock_internal.h"

#include <stdlib.h>

void mock_buf_grow(struct mock_buf *b, size_t extra)
{
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < extra)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		abort(); /* a test tool: out of memory is fatal */
	b->p = p;
	b->cap = cap;
}

void mock_buf_free(struct mock_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* What we echo must stay JSON, and JSON text is UTF-8. */
size_t mock_utf8_len(const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* JSON string contents (no quotes) for short texts we echo, like a path;
 * bytes that are not UTF-8 become U+FFFD. */
void mock_put_json_escaped(struct mock_buf *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x80) {
			size_t l = mock_utf8_len(s + i, n - i);
			if (l) {
				put(b, s + i, l);
				i += l - 1;
			} else {
				PUTL(b, "\\ufffd");
			}
		} else if (ch == '"' || ch == '\\') {
			put_ch(b, '\\');
			put_ch(b, (char)ch);
		} else if (ch < 0x20) {
			static const char hx[] = "0123456789abcdef";
			char e[6] = {'\\', 'u', '0', '0', hx[ch >> 4], hx[ch & 15]};
			put(b, e, 6);
		} else {
			put_ch(b, (char)ch);
		}
	}
}

/* The vocabulary; lengths computed at compile time (a table filled at
 * start would be rewritten under a running mock by the next
 * mock_server_start on another thread). */
#define MOCK_WORDS(X) \
	X("the") X("quick") X("brown") X("fox") X("jumps") X("over") X("lazy") X("dog") \
	X("ring") X("buffer") X("token") X("stream") X("model") X("server") X("client") X("reply") \
	X("kernel") X("socket") X("queue") X("event") X("batch") X("prompt") X("answer") X("cache") \
	X("fast") X("small") X("large") X("simple") X("clear") X("quiet") X("bright") X("steady") \
	X("river") X("mountain") X("forest") X("ocean") X("cloud") X("stone") X("light") X("shadow") \
	X("alpha") X("beta") X("gamma") X("delta") X("omega") X("sigma") X("theta") X("kappa") \
	X("one") X("two") X("three") X("four") X("five") X("six") X("seven") X("eight") \
	X("red") X("green") X("blue") X("amber") X("silver") X("golden") X("violet") X("white")
#define WORD_TEXT(w) w,
#define WORD_LENGTH(w) sizeof(w) - 1,
const char *const mock_words[64] = {MOCK_WORDS(WORD_TEXT)};
const uint8_t mock_word_len[64] = {MOCK_WORDS(WORD_LENGTH)};

void mock_put_text(struct mock_buf *b, uint64_t seed, uint64_t n, unsigned ntok)
{
	for (unsigned i = 0; i < ntok; i++) {
		unsigned w = word_at(seed, n, i);
		if (i)
			put_ch(b, ' ');
		put(b, mock_words[w], mock_word_len[w]);
	}
}

/* One float in [-1, 1] with six decimals. */
static void put_unit_float(struct mock_buf *b, uint64_t h)
{
	long v = (long)(h % 2000001) - 1000000;
	if (v < 0) {
		put_ch(b, '-');
		v = -v;
	}
	put_ch(b, (char)('0' + v / 1000000));
	put_ch(b, '.');
	char d[6];
	long f = v % 1000000;
	for (int i = 5; i >= 0; i--) {
		d[i] = (char)('0' + f % 10);
		f /= 10;
	}
	put(b, d, 6);
}

void mock_put_vector(struct mock_buf *b, uint64_t seed, uint64_t n, unsigned i)
{
	put_ch(b, '[');
	for (unsigned k = 0; k < 8; k++) {
		if (k)
			put_ch(b, ',');
		put_unit_float(b, mix64(seed ^ mix64(n * 131 + i * 8 + k)));
	}
	put_ch(b, ']');
}
