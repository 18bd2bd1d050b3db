"""docs/python.md, "Chat completions": a streaming chat loop that keeps its
history, printing each reply as it arrives.
usage: stream_chat.py [BASE_URL]"""
import asyncio
import sys

import pyllmring as llm


async def main(base_url):
    history = [{"role": "system", "content": "Answer in one sentence."}]
    async with llm.AsyncOpenAI(base_url=base_url) as client:
        for question in ("What is io_uring?", "And TLS?"):
            history.append({"role": "user", "content": question})
            stream = await client.chat.completions.create(
                model="openai/gpt-4o-mini", messages=history, stream=True)
            reply = []
            async with stream:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        reply.append(chunk.choices[0].delta.content)
            history.append({"role": "assistant", "content": "".join(reply)})
            print("assistant:", history[-1]["content"])
    print("turns:", (len(history) - 1) // 2)

asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
