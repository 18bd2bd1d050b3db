#!/usr/bin/env python3
"""Runs one program of docs/examples against `llmring mock`.

usage: run_example.py LLMRING EXAMPLE EXPECTED_LINE [MOCK_ARG...]

Starts `llmring mock --listen 127.0.0.1:0 [MOCK_ARG...]` (its own process, a
free port), runs EXAMPLE with the mock's base URL (http://127.0.0.1:PORT/v1)
as its one argument, in an environment without provider keys or base URLs
(no network, no key), and passes when the example exits 0 and some line of
its standard output contains EXPECTED_LINE. Exits 0 pass, 1 fail.
"""
import os
import subprocess
import sys

# Variables that would send a key to the mock or requests elsewhere.
CLEARED = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENAI_BASE_URL",
           "ANTHROPIC_BASE_URL", "GEMINI_BASE_URL", "OLLAMA_HOST", "LLMRING_MOCK_URL",
           "LLMRING_PRICES", "SSL_CERT_FILE")


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    llmring, example, expected = sys.argv[1:4]
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    mock = subprocess.Popen([llmring, "mock", "--listen", "127.0.0.1:0"] + sys.argv[4:],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = mock.stdout.readline()
        if "listening on " not in line:
            print("FAIL the mock did not start: %r %s" % (line, mock.stderr.read()))
            return 1
        url = line.split("listening on ", 1)[1].strip() + "/v1"
        try:
            p = subprocess.run([example, url], capture_output=True, text=True, env=env, timeout=120)
        except subprocess.TimeoutExpired as e:
            print("FAIL %s did not finish in 120 s\n%s" % (example, e.stdout or ""))
            return 1
        sys.stdout.write(p.stdout)
        sys.stdout.write(p.stderr)
        name = os.path.basename(example)
        if p.returncode != 0:
            print("FAIL %s exited with status %d" % (name, p.returncode))
            return 1
        if not any(expected in l for l in p.stdout.splitlines()):
            print("FAIL %s printed no line containing %r" % (name, expected))
            return 1
        print("PASS %s" % name)
        return 0
    finally:
        mock.kill()
        mock.wait()


if __name__ == "__main__":
    sys.exit(main())
