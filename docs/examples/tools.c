/*
 * Tool calls: offer a function, read the call from the result, answer it
 * with a tool result, and get the final reply.
 *
 * usage: tools BASE_URL
 */
#include <llmring.h>
#include <stdio.h>
#include <string.h>

static const char weather_schema[] =
	"{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
	"\"days\":{\"type\":\"integer\"}},\"required\":[\"city\"]}";

/* s as a JSON string ("..." with \" and \\); -1 when it does not fit or
 * holds a control character. */
static int json_quote(char *dst, size_t cap, const char *s)
{
	size_t n = 0;
	dst[n++] = '"';
	for (; *s; s++) {
		if (n + 3 >= cap || (unsigned char)*s < 0x20)
			return -1;
		if (*s == '"' || *s == '\\')
			dst[n++] = '\\';
		dst[n++] = *s;
	}
	dst[n++] = '"';
	dst[n] = '\0';
	return 0;
}

/* The request both rounds share: the question and the tool. */
static lr_request *weather_request(void)
{
	lr_request *rq = lr_request_new("openai/gpt-4o-mini");
	lr_request_add_message(rq, LR_ROLE_USER, "What will the weather be in Paris?");
	lr_request_add_tool(rq, "get_weather", "Forecast for a city", weather_schema);
	return rq;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s BASE_URL\n", argv[0]);
		return 2;
	}
	lr_config cfg = lr_config_default();
	cfg.base_url = argv[1];
	lr_engine *eng;
	int rc = lr_engine_new(&cfg, &eng);
	if (rc < 0) {
		fprintf(stderr, "lr_engine_new: %s\n", lr_strerror(rc));
		return 1;
	}

	/* docs:begin call */
	lr_request *rq = weather_request();
	lr_request_set_tool_choice(rq, "auto"); /* or "none", "required", a function's name */
	lr_future *f = lr_complete(eng, rq, 30000);
	const lr_result *r = f ? lr_future_result(f) : NULL;
	if (!r || r->error || r->tool_call_count != 1) {
		fprintf(stderr, "expected one tool call\n");
		lr_future_release(f);
		lr_engine_destroy(eng);
		return 1;
	}
	const lr_tool_call *call = &r->tool_calls[0]; /* lives as long as f */
	printf("finish_reason %s: %s(%s) id %s\n", r->finish_reason, call->name, call->arguments,
	       call->id);
	/* docs:end call */

	/* docs:begin answer */
	/* The assistant's turn as OpenAI JSON, then the tool's answer to it. */
	char id[128], name[128], args[512], turn[1024];
	rc = LR_EINVAL;
	if (json_quote(id, sizeof(id), call->id) == 0 && json_quote(name, sizeof(name), call->name) == 0 &&
	    json_quote(args, sizeof(args), call->arguments) == 0) {
		snprintf(turn, sizeof(turn),
		         "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":%s,"
		         "\"type\":\"function\",\"function\":{\"name\":%s,\"arguments\":%s}}]}",
		         id, name, args);
		rc = 0;
	}
	lr_request *next = weather_request();
	if (rc == 0)
		rc = lr_request_add_message_json(next, turn); /* validated: LR_EINVAL if not an object */
	if (rc == 0)
		rc = lr_request_add_tool_result(next, call->id, "{\"forecast\":\"sunny\",\"high_c\":24}");
	lr_future_release(f); /* call pointed into f's result: done with it */
	if (rc < 0) {
		fprintf(stderr, "building the answer: %s\n", lr_strerror(rc));
		lr_request_free(next);
		lr_engine_destroy(eng);
		return 1;
	}
	f = lr_complete(eng, next, 30000);
	r = f ? lr_future_result(f) : NULL;
	int ok = r && r->error == LR_OK && r->tool_call_count == 0 && r->text_len > 0;
	printf("final reply (%s): %s\n", r && r->finish_reason ? r->finish_reason : "-",
	       r && r->text ? r->text : "");
	/* docs:end answer */

	printf(ok ? "tool round trip done\n" : "FAILED\n");
	lr_future_release(f);
	lr_engine_destroy(eng);
	return ok ? 0 : 1;
}
