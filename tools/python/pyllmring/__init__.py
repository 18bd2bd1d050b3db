"""pyllmring: the llmring engine (io_uring HTTP, every provider's dialect)
for Python, in the shapes of openai-python (AsyncOpenAI, OpenAI) and
LiteLLM (acompletion, completion, batch_completion).

    import pyllmring as llm
    client = llm.AsyncOpenAI()
    r = await client.chat.completions.create(model="openai/gpt-4o-mini",
                                             messages=[{"role": "user", "content": "Hi"}])
    print(r.choices[0].message.content, r.llmring.cost_usd)
"""

from . import _core
from ._client import AsyncOpenAI, AsyncSession, AsyncStream, OpenAI, Session, Stream
from ._errors import *  # noqa: F401,F403 (the exception classes)
from ._errors import __all__ as _error_names
from ._litellm import (abatch_completion, acompletion, aembedding, batch_completion, completion,
                       default_client, embedding)
from ._run_batch import run_batch
from ._types import ChatCompletion, ChatCompletionChunk, Completion, CreateEmbeddingResponse

try:
    from ._batch import Mock  # `llmring mock` in this process (tests, examples)
except ImportError:  # a build without the CLI library
    Mock = None

__version__ = _core.version()


def model_provider(model):
    """(provider, model sent) for a "provider/model" string."""
    return _core.model_provider(model)


__all__ = ["AsyncOpenAI", "OpenAI", "AsyncSession", "Session", "AsyncStream", "Stream",
           "acompletion", "completion", "batch_completion", "abatch_completion",
           "aembedding", "embedding", "default_client", "run_batch", "model_provider", "Mock",
           "ChatCompletion", "ChatCompletionChunk", "Completion", "CreateEmbeddingResponse",
           *_error_names]
