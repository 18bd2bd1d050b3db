"""docs/python.md, "Errors": the exception classes and what they carry.
usage: errors.py [BASE_URL]  (the mock's faults are asked for by header)"""
import sys

import pyllmring as llm

client = llm.OpenAI(base_url=sys.argv[1] if len(sys.argv) > 1 else None, max_retries=0)
for fault in ("429", "401", "context"):
    try:
        client.chat.completions.create(model="openai/gpt-4o-mini",
                                       messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-mock-fault": fault})
    except llm.RateLimitError as e:
        print("rate limited:", e.code, e.status_code, "retry after", e.retry_after)
    except llm.AuthenticationError as e:
        print("auth:", e.code, e.status_code)
    except llm.BadRequestError as e:
        print("bad request:", type(e).__name__, e.code)
client.close()
