"""docs/python.md, "Bulk work" and "Migrating": many prompts without a
semaphore, outcomes in input order, failures in place; then LiteLLM's
batch_completion and the usage report.
usage: bulk.py [BASE_URL]"""
import asyncio
import sys

import pyllmring as llm

PROMPTS = [f"Summarise item {i}" for i in range(1000)]


async def main(base_url):
    async with llm.AsyncOpenAI(base_url=base_url, max_in_flight=64) as client:
        outcomes = await client.batch([[{"role": "user", "content": p}] for p in PROMPTS],
                                      model="openai/gpt-4o-mini")
        failed = [o for o in outcomes if isinstance(o, llm.APIError)]
        print("succeeded:", len(outcomes) - len(failed), "failed:", len(failed))
        usage = client.usage()
        print("input tokens:", usage["input_tokens"], "cost_usd: %.6f" % usage["cost_usd"])


base = sys.argv[1] if len(sys.argv) > 1 else None
asyncio.run(main(base))
rs = llm.batch_completion(model="ollama/qwen3:4b", api_base=base,
                          messages=[[{"role": "user", "content": "hi"}]] * 10)
print("batch_completion:", sum(1 for r in rs if not isinstance(r, Exception)), "of", len(rs))
