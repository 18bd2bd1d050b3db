#!/usr/bin/env python3
"""The size rule (issue 10): no source file of the library, the CLI, the
mock or the Python extension over MAX_FILE_LINES lines, and no function over
MAX_FUNCTION_LINES, unless the reason is written beside it: a file's first
comment holds "Why this file is long:", a function's comment just above it
"Why this function is long:". Test files are exempt (each says at its top
why it is long: one table of short, independent cases).

usage: test_sizes.py SOURCE_ROOT
Exits 0 when every file and function keeps to the rule, 1 listing each one
that does not.
"""
import os
import sys

MAX_FILE_LINES = 800
MAX_FUNCTION_LINES = 100
FOLDERS = ["engine", "tools/cli", "tools/mock", "tools/python/pyllmring", "tools/bench"]
FILE_REASON = "Why this file is long:"
FUNCTION_REASON = "Why this function is long:"


def functions(lines):
    """(first line index, name line, length) of each top-level function
    body: the kernel style opens a function's brace at column 0 on its own
    line and closes it at column 0."""
    start = None
    for i, line in enumerate(lines):
        if start is None and line.startswith("{"):
            start = i
            sig = i - 1
            while sig > 0 and "(" not in lines[sig]:
                sig -= 1
        elif start is not None and line.startswith("}"):
            yield sig, lines[sig].strip(), i - start + 1
            start = None


def check(root):
    problems, seen = [], 0
    for folder in FOLDERS:
        for dirpath, _, names in os.walk(os.path.join(root, folder)):
            for name in sorted(names):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8", errors="replace") as f:
                    lines = f.read().split("\n")
                seen += 1
                head = "\n".join(lines[:40])
                if len(lines) > MAX_FILE_LINES and FILE_REASON not in head:
                    problems.append("%s: %d lines (over %d, and no '%s' in its header)" %
                                    (rel, len(lines), MAX_FILE_LINES, FILE_REASON))
                for sig, name_line, n in functions(lines):
                    if n <= MAX_FUNCTION_LINES:
                        continue
                    above = "\n".join(lines[max(0, sig - 12):sig])
                    if FUNCTION_REASON not in above:
                        problems.append("%s:%d: %s is %d lines (over %d, and no '%s' above it)" %
                                        (rel, sig + 1, name_line[:60], n, MAX_FUNCTION_LINES,
                                         FUNCTION_REASON))
    return problems, seen


def self_check():
    """The scanner finds a long function and honours a reason (so this test
    cannot pass by finding nothing)."""
    body = ["\tx++;"] * MAX_FUNCTION_LINES
    long_fn = ["static void f(void)", "{"] + body + ["}"]
    found = [n for _, _, n in functions(long_fn)]
    assert found == [MAX_FUNCTION_LINES + 2], found
    short_fn = ["int g(int a)", "{", "\treturn a;", "}"]
    assert [n for _, _, n in functions(short_fn)] == [3]


def main():
    self_check()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    problems, seen = check(root)
    for p in problems:
        print(p)
    print("%d files checked, %d over the size rule" % (seen, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
