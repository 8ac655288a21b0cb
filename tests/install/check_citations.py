#!/usr/bin/env python3
"""The repository speaks of the product only, and every citation points into it.

usage: check_citations.py SOURCE_DIR

Over every tracked text file (git ls-files; build trees and node_modules are not
tracked): each "docs/NAME.md" (or docs/NAME) cited exists; nothing cites the outside
design file (DESIGN_FILE below) or a path outside the repository (OUTSIDE_DIR); no
team-process notes (how a team edits a working tree is not the product). Prints each offence as FILE:LINE: WHAT and exits 1
if there is any.
"""
import os
import re
import subprocess
import sys

CITE = re.compile(r"\bdocs/([A-Za-z0-9_.-]+\.(?:md|png|svg|txt))")
# Spelled in pieces so that this file does not itself cite what it forbids.
DESIGN_FILE = "DESIGN" + ".md"
OUTSIDE_DIR = "../" + "shared"
TEAM_NOTES = "TEAM" + "-RULES"
BANNED = [
    (re.compile(re.escape(DESIGN_FILE)), "cites " + DESIGN_FILE + ", which is not in the repository"),
    (re.compile(re.escape(OUTSIDE_DIR) + r"\b"), "cites " + OUTSIDE_DIR + ", outside the repository"),
    (re.compile(re.escape(TEAM_NOTES)), "cites " + TEAM_NOTES + " (team process, not the product)"),
]


def main():
    src = sys.argv[1]
    files = subprocess.run(["git", "-C", src, "ls-files", "-z"], check=True, capture_output=True).stdout
    bad = []
    for rel in files.decode().split("\0"):
        if not rel or rel == "tests/install/check_citations.py":  # its docstring names docs/NAME.md
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
    if os.path.exists(os.path.join(src, "docs", TEAM_NOTES + ".md")):
        bad.append("docs/" + TEAM_NOTES + ".md exists")
    for b in bad:
        print(b)
    print("%d offence(s)" % len(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
