"""pyllmring: the llmring engine for Python (placeholder: the package layer replaces this)."""
from . import _core  # noqa: F401
