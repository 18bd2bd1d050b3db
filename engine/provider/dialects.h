/* The rows the dialect files define, for provider.c's table (no other
 * file includes this). */
#ifndef LR_DIALECTS_H
#define LR_DIALECTS_H

#include "provider/dialect.h"

extern const struct provider_row openai_row;    /* openai.c */
extern const struct provider_row mock_row;      /* openai.c: the OpenAI dialect at a given URL */
extern const struct provider_row anthropic_row; /* anthropic.c */
extern const struct provider_row ollama_row;    /* ollama.c */
extern const struct provider_row gemini_row;    /* gemini.c */

#endif
