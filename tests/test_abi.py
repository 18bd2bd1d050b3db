#!/usr/bin/env python3
"""The ABI: the functions include/llmring.h declares (LR_API), the symbols
engine/llmring.map names, and those the built libllmring.so exports must be
the same set, each export carrying the map's version node.

usage: test_abi.py LIBLLMRING_SO MAP HEADER
"""
import re
import subprocess
import sys


def declared(header):
    text = open(header, encoding="utf-8").read()
    return set(re.findall(r"^LR_API\b[^;(]*?\b(lr_[a-z0-9_]+)\s*\(", text, re.M))


def mapped(path):
    text = re.sub(r"/\*.*?\*/", "", open(path, encoding="utf-8").read(), flags=re.S)
    names, nodes = set(), re.findall(r"([A-Z0-9_.]+)\s*\{(.*?)\}", text, re.S)
    for node, body in nodes:
        glob = body.split("local:")[0].replace("global:", "")
        for sym in re.findall(r"([A-Za-z_][A-Za-z0-9_*]*)\s*;", glob):
            names.add((sym, node))
    return names


def exported(lib):
    out = subprocess.run(["nm", "-D", "--defined-only", lib], capture_output=True, text=True,
                         check=True).stdout
    syms = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtWwDdBbRr" and "@" in parts[2]:
            name, _, node = parts[2].partition("@")
            syms.add((name, node.lstrip("@")))
        elif len(parts) == 3 and parts[1] in "A":
            continue  # the version node itself
    return syms


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    lib, map_path, header = sys.argv[1:]
    decl = declared(header)
    in_map = mapped(map_path)
    map_names = {n for n, _ in in_map}
    exp = exported(lib)
    problems = []
    if any("*" in n for n in map_names):
        problems.append("the map uses a wildcard: name every symbol")
    for n in sorted(decl - map_names):
        problems.append("%s is declared LR_API in the header but not in the map" % n)
    for n in sorted(map_names - decl):
        problems.append("%s is in the map but not declared LR_API in the header" % n)
    exp_names = {n for n, _ in exp}
    for n in sorted(map_names - exp_names):
        problems.append("%s is in the map but the library does not export it" % n)
    for n in sorted(exp_names - map_names):
        problems.append("the library exports %s, which the map does not name" % n)
    for n, node in sorted(exp - in_map):
        if n in map_names:
            problems.append("%s is exported in version node %s, not the map's" % (n, node))
    for p in problems:
        print("FAIL " + p)
    print("abi: %d declared, %d in the map, %d exported" % (len(decl), len(map_names), len(exp_names)))
    print("1 tests, %d passed, %d failed" % (0 if problems else 1, 1 if problems else 0))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
