#!/usr/bin/env python3
"""The layering of engine/: every #include of an engine file must name a
header of its own folder or of a folder before it in LAYERS, folder-qualified
("io/ring.h"); the public "llmring.h" is open to all. Sources may live only in
the layer folders.

usage: test_layers.py SOURCE_ROOT
Within the order, no cycle between files either: a file and its header
are one module (provider/openai.c and provider/openai.h are
"provider/openai"), and the modules' includes must form no cycle (a layer
is allowed to be one folder, not one tangle).

Exits 0 when every include keeps to the order and no cycle is found, 1
(listing each violation) otherwise.
"""
import os
import re
import sys

LAYERS = ["util", "io", "http", "format", "provider", "core", "api"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def check(root):
    engine = os.path.join(root, "engine")
    problems, files, edges = [], 0, 0
    for name in sorted(os.listdir(engine)):
        path = os.path.join(engine, name)
        if os.path.isfile(path) and name.endswith((".c", ".h")):
            problems.append("engine/%s: sources belong in a layer folder (%s)" %
                            (name, ", ".join(LAYERS)))
        elif os.path.isdir(path) and name not in LAYERS:
            problems.append("engine/%s/: not a layer (%s)" % (name, ", ".join(LAYERS)))
    for layer in LAYERS:
        folder = os.path.join(engine, layer)
        for dirpath, _, names in os.walk(folder):
            for name in sorted(names):
                if not name.endswith((".c", ".h")):
                    continue
                files += 1
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                text = open(os.path.join(dirpath, name), encoding="utf-8").read()
                for inc in INCLUDE.findall(text):
                    if inc == "llmring.h":
                        continue
                    edges += 1
                    parts = inc.split("/")
                    if len(parts) != 2 or parts[0] not in LAYERS:
                        problems.append("%s: #include \"%s\" is not folder-qualified "
                                        "(write \"LAYER/%s\")" % (rel, inc, parts[-1]))
                        continue
                    if not os.path.isfile(os.path.join(engine, inc)):
                        problems.append("%s: #include \"%s\": no such engine header" % (rel, inc))
                        continue
                    if LAYERS.index(parts[0]) > LAYERS.index(layer):
                        problems.append("%s (%s) includes \"%s\": %s is a later layer; %s may "
                                        "use only %s" % (rel, layer, inc, parts[0], layer,
                                                         ", ".join(LAYERS[:LAYERS.index(layer) + 1])))
    return problems, files, edges


def module_cycles(root):
    """Cycles in the include graph of engine/ modules (x.c + x.h)."""
    engine = os.path.join(root, "engine")
    graph = {}
    for layer in LAYERS:
        for dirpath, _, names in os.walk(os.path.join(engine, layer)):
            for name in names:
                if not name.endswith((".c", ".h")):
                    continue
                mod = os.path.relpath(os.path.join(dirpath, name[:-2]), engine)
                text = open(os.path.join(dirpath, name), encoding="utf-8").read()
                deps = graph.setdefault(mod, set())
                for inc in INCLUDE.findall(text):
                    if inc != "llmring.h" and inc.endswith(".h") and inc[:-2] != mod:
                        deps.add(inc[:-2])
    cycles, state, stack = [], {}, []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems, files, edges = check(sys.argv[1])
    for cycle in module_cycles(sys.argv[1]):
        problems.append("include cycle between files: %s" % " -> ".join(cycle))
    for p in problems:
        print("FAIL " + p)
    # One test per file set keeps the suite's tally honest: files checked.
    print("layers: %d files, %d engine includes checked" % (files, edges))
    print("1 tests, %d passed, %d failed" % (0 if problems else 1, 1 if problems else 0))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
