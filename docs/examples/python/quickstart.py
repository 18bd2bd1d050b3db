"""docs/python.md, "The API": one request from asyncio, and its cost.
usage: quickstart.py [BASE_URL]  (none: each provider's own endpoint and key)"""
import asyncio
import sys

import pyllmring as llm


async def main(base_url):
    async with llm.AsyncOpenAI(base_url=base_url) as client:
        r = await client.chat.completions.create(
            model="anthropic/claude-haiku-4-5",
            messages=[{"role": "user", "content": "Hello"}], max_tokens=64)
        print(r.choices[0].message.content)
        print("tokens:", r.usage.total_tokens, "cost_usd:", r.llmring.cost_usd)

asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
