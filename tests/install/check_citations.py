#!/usr/bin/env python3
"""The repository speaks of the product only, and every citation points into it.

usage: check_citations.py SOURCE_DIR

Over every tracked text file (git ls-files; build trees and node_modules are not
tracked): each "docs/NAME.md" (or docs/NAME) cited exists; nothing cites DESIGN.md or a
path outside the repository ("../shared"); no docs/TEAM-RULES.md (how a team edits a
working tree is not the product). Prints each offence as FILE:LINE: WHAT and exits 1
if there is any.
"""
import os
import re
import subprocess
import sys

CITE = re.compile(r"\bdocs/([A-Za-z0-9_.-]+\.(?:md|png|svg|txt))")
BANNED = [
    (re.compile(r"DESIGN\.md"), "cites DESIGN.md, which is not in the repository"),
    (re.compile(r"\.\./shared\b"), "cites ../shared, outside the repository"),
    (re.compile(r"TEAM-RULES"), "cites TEAM-RULES (team process, not the product)"),
]


def main():
    src = sys.argv[1]
    files = subprocess.run(["git", "-C", src, "ls-files", "-z"], check=True, capture_output=True).stdout
    bad = []
    for rel in files.decode().split("\0"):
        if not rel or rel == "tests/install/check_citations.py":
            continue
        path = os.path.join(src, rel)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            for m in CITE.finditer(line):
                if not os.path.exists(os.path.join(src, "docs", m.group(1))):
                    bad.append("%s:%d: cites docs/%s, which does not exist" % (rel, n, m.group(1)))
            for rx, why in BANNED:
                if rx.search(line):
                    bad.append("%s:%d: %s" % (rel, n, why))
    if os.path.exists(os.path.join(src, "docs", "TEAM-RULES.md")):
        bad.append("docs/TEAM-RULES.md exists")
    for b in bad:
        print(b)
    print("%d offence(s)" % len(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
