#!/usr/bin/env python3
"""The API reference cannot drift from the code it shows.

usage: test_docs_api.py SOURCE_ROOT

Every ```c block of docs/api/*.md is preceded (blank lines aside) by a
marker naming what it shows, and must match it:
  <!-- example: docs/examples/F.c -->         the whole file, byte for byte
  <!-- example: docs/examples/F.c#NAME -->    the lines between
                                              `/* docs:begin NAME */` and
                                              `/* docs:end NAME */` in F.c,
                                              byte for byte
  <!-- header -->                             each paragraph of the block
                                              (split at blank lines) is text
                                              of include/llmring.h, comments
                                              included, whitespace aside
Also: every LR_API function of the header is shown in some header block;
every field of every public struct is named (`field`) on some page; every
docs/examples/*.c is shown and listed in docs/examples/meson.build; the
error table of errors.md is LR_ERRNO_MAP, row for row.
"""
import glob
import os
import re
import sys

ROOT = None
FAILS = []
CHECKS = [0]


def fail(msg):
    FAILS.append(msg)
    print("FAIL " + msg)


def check(cond, msg):
    CHECKS[0] += 1
    if not cond:
        fail(msg)
    return cond


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def norm(s):
    return " ".join(s.split())


def region(text, name):
    lines = text.splitlines(keepends=True)
    begin = [i for i, l in enumerate(lines) if l.strip() == "/* docs:begin %s */" % name]
    end = [i for i, l in enumerate(lines) if l.strip() == "/* docs:end %s */" % name]
    if len(begin) != 1 or len(end) != 1 or end[0] <= begin[0]:
        return None
    return "".join(lines[begin[0] + 1:end[0]])


def blocks(md):
    """(line number, marker or None, code) of each ```c block."""
    out = []
    lines = md.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if lines[i].rstrip("\n") == "```c":
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            m = re.fullmatch(r"<!-- (example: \S+|header) -->", lines[j].strip()) if j >= 0 else None
            k = i + 1
            while k < len(lines) and lines[k].rstrip("\n") != "```":
                k += 1
            out.append((i + 1, m.group(1) if m else None, "".join(lines[i + 1:k])))
            i = k
        i += 1
    return out


def main():
    global ROOT
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ROOT = sys.argv[1]
    header = read("include/llmring.h")
    header_norm = norm(header)
    pages = sorted(glob.glob(os.path.join(ROOT, "docs/api/*.md")))
    check(len(pages) >= 6, "docs/api/ holds the reference pages")
    examples = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "docs/examples/*.c")))
    shown_examples, header_text, all_pages = set(), [], ""

    for page in pages:
        rel = os.path.relpath(page, ROOT)
        md = open(page, encoding="utf-8").read()
        all_pages += md
        for line, marker, code in blocks(md):
            where = "%s:%d" % (rel, line)
            if not check(marker is not None, "%s: a ```c block without a marker saying what it shows" % where):
                continue
            if marker == "header":
                header_text.append(code)
                for para in re.split(r"\n\s*\n", code):
                    if para.strip():
                        check(norm(para) in header_norm,
                              "%s: not text of include/llmring.h: %s" % (where, norm(para)[:100]))
                continue
            target = marker[len("example: "):]
            path, _, name = target.partition("#")
            if not check(path.startswith("docs/examples/") and os.path.exists(os.path.join(ROOT, path)),
                         "%s: %s is not a file of docs/examples/" % (where, path)):
                continue
            shown_examples.add(os.path.basename(path))
            text = read(path)
            want = region(text, name) if name else text
            if not check(want is not None, "%s: %s has no region %s (one docs:begin, one docs:end)"
                         % (where, path, name)):
                continue
            check(code == want, "%s: the block differs from %s" % (where, target))

    # Every function of the header is shown with its declaration.
    shown = norm(" ".join(header_text))
    for fn in sorted(set(re.findall(r"^LR_API\b[^;(]*?\b(lr_[a-z0-9_]+)\s*\(", header, re.M))):
        check(re.search(r"\b%s\s*\(" % fn, shown), "%s is declared in the header but no page shows it" % fn)

    # Every field of every public struct is named on some page.
    for sname, body in re.findall(r"typedef struct (lr_[a-z_]+) \{(.*?)\n\} \1;", header, re.S):
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        for decl in body.split(";"):
            decl = re.sub(r"\(\s*\*\s*(\w+)\s*\)\s*\(.*", r" \1", decl.strip(), flags=re.S)  # fn pointers
            decl = re.sub(r"\[[^\]]*\]", "", decl)
            if not decl:
                continue
            names = [n.strip().lstrip("*") for n in decl.split(",")]
            names[0] = names[0].split()[-1].lstrip("*")
            for n in names:
                check(("`%s`" % n) in all_pages or ("`%s." % n) in all_pages or (".%s`" % n) in all_pages,
                      "%s.%s is named on no page of docs/api/" % (sname, n))

    # Every example is shown and built.
    build = read("docs/examples/meson.build")
    for ex in examples:
        check(ex in shown_examples, "docs/examples/%s is shown on no page" % ex)
        check(re.search(r"\['%s'," % re.escape(ex[:-2]), build),
              "docs/examples/%s is not listed in docs/examples/meson.build" % ex)

    # The error table is the header's list.
    errors_md = read("docs/api/errors.md")
    rows = re.findall(r"^\| `LR_(E[A-Z_]+)` \| (-\d+) \| `([a-z_]+)` \| ([^|]*?) \|", errors_md, re.M)
    mapped = re.findall(r'XX\((E[A-Z_]+), (-\d+), "([a-z_]+)", "([^"]*)"\)', header)
    check(len(mapped) > 20, "LR_ERRNO_MAP parsed from the header")
    check(rows == mapped,
          "the table of docs/api/errors.md is not LR_ERRNO_MAP (code, value, name, message), in order")

    passed = CHECKS[0] - len(FAILS)
    print("docs_api: %d pages, %d examples shown" % (len(pages), len(shown_examples)))
    print("%d tests, %d passed, %d failed" % (CHECKS[0], passed, len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
