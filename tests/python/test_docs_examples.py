"""The programs docs/python.md shows (docs/examples/python/) run against
`llmring mock` in its own process, with no key and no provider variables,
and print what the page says they print."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "python"
LLMRING = os.environ.get("LLMRING_BIN", "llmring")
CLEARED = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENAI_BASE_URL",
           "ANTHROPIC_BASE_URL", "GEMINI_BASE_URL", "OLLAMA_HOST", "LLMRING_MOCK_URL",
           "LLMRING_PRICES", "SSL_CERT_FILE")
EXPECTED = {
    "quickstart.py": r"^tokens: \d+ cost_usd: [0-9.e-]+$",
    "stream_chat.py": r"^turns: 2$",
    "bulk.py": r"^batch_completion: 10 of 10$",
    "errors.py": r"^bad request: ContextWindowExceededError context_length_exceeded$",
}


@pytest.fixture(scope="module")
def mock_url():
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    p = subprocess.Popen([LLMRING, "mock", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, env=env)
    line = p.stdout.readline()
    assert "listening on " in line
    yield line.split()[-1] + "/v1"
    p.terminate()
    p.wait(10)


def test_every_example_is_in_the_page():
    page = (ROOT / "docs" / "python.md").read_text()
    found = sorted(f.name for f in EXAMPLES.glob("*.py"))
    assert found == sorted(EXPECTED)
    for name in found:
        assert f"examples/python/{name}" in page, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(mock_url, name):
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    p = subprocess.run([sys.executable, str(EXAMPLES / name), mock_url], capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert re.search(EXPECTED[name], p.stdout, re.M), p.stdout
