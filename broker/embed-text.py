#!/usr/bin/env python3
"""embed-text.py IN OUT NAME: OUT is C defining `const char NAME[]`, IN's text."""
import sys

src, out, name = sys.argv[1:4]
text = open(src, encoding="utf-8").read()
with open(out, "w", encoding="utf-8") as f:
    f.write(f"/* generated from {src.split('/')[-1]} by embed-text.py */\n")
    f.write(f"extern const char {name}[];\nconst char {name}[] =\n")
    for line in text.splitlines(True):
        f.write('\t"' + line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"\n')
    f.write(";\n")
