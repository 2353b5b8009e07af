#!/usr/bin/env python3
"""The documentation against the code, so that neither drifts (issue 14).

a. Every key a configuration parser accepts (its IS("section", "key")
   lines) is in its markdown reference's table under "## [section]", once,
   and every key documented there (or set in an ```ini example) is accepted.
b. Every long option a program's --help prints is in its man page's
   OPTIONS (or COMMANDS) section, and every option those sections name is
   in --help, with the same short option.
c. Every nestorctl command of its usage (and of its command table) is a
   term of nestorctl.1.scd's COMMANDS, and every term there is a command.

Run by meson (suite unit) with the built programs; prints every problem
and exits 1 if there is one.
"""
import argparse
import os
import re
import subprocess
import sys

# Keys documented ahead of their parser (a feature merged separately):
# allowed to be missing from the parser until then. Empty once merged.
PENDING = set()

# (markdown reference, its parser)
CONFIGS = [
    ("docs/configuration.md", "broker/config.c"),
    ("docs/gateway-configuration.md", "rdp-gateway/gwconfig.c"),
]

problems = []


def fail(where, what):
    problems.append("%s: %s" % (where, what))


def read(src, path):
    with open(os.path.join(src, path), encoding="utf-8") as f:
        return f.read()


# --- a. configuration keys ---

def parser_keys(text):
    return set("%s.%s" % m for m in re.findall(r'\bIS\("(\w+)",\s*"(\w+)"\)', text))


def documented_keys(md_path, text):
    """{section.key: line} from the key tables, and the keys set in ```ini examples."""
    keys, examples = {}, set()
    section, in_code, ini, ini_section, header = None, False, False, None, None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_code, ini = not in_code, line.strip() == "```ini"
            continue
        if in_code:
            m = re.match(r"\[(\w+)\]\s*$", line)
            if ini and m:
                ini_section = m.group(1)
            elif ini and re.match(r"\w+\s*=", line):
                examples.add("%s.%s" % (ini_section, line.split("=")[0].strip()))
            continue
        if line.startswith("## "):
            m = re.search(r"\[(\w+)\]", line)
            section = m.group(1) if m else None
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells[0].lower()
            continue
        if header != "key" or re.fullmatch(r"[\s|:-]+", line):
            continue
        if section is None:
            fail("%s:%d" % (md_path, n), "a key table outside a '## [section]' heading")
            continue
        for key in re.findall(r"`([^`]+)`", cells[0]):
            name = "%s.%s" % (section, key)
            if name in keys:
                fail("%s:%d" % (md_path, n), "[%s] %s documented twice (first on line %d)"
                     % (section, key, keys[name]))
            keys[name] = n
    return keys, examples


def check_config(src):
    count = 0
    for md_path, c_path in CONFIGS:
        accepted = parser_keys(read(src, c_path))
        if not accepted:
            fail(c_path, "no IS(\"section\", \"key\") lines found: has the parser changed?")
        documented, examples = documented_keys(md_path, read(src, md_path))
        for name in sorted(accepted - documented.keys()):
            fail(md_path, "key [%s] %s is accepted by %s but not documented"
                 % (*name.split("."), c_path))
        for name in sorted(documented.keys() - accepted - PENDING):
            fail(md_path, "key [%s] %s is documented (line %d) but %s does not accept it"
                 % (*name.split("."), documented[name], c_path))
        for name in sorted(examples - accepted - PENDING):
            fail(md_path, "the example sets [%s] %s, which %s does not accept"
                 % (*name.split("."), c_path))
        for name in sorted(PENDING & accepted):
            print("note: %s now accepts %s: remove it from PENDING in %s"
                  % (c_path, name, os.path.basename(__file__)))
        count += len(accepted)
    return count


# --- b. options, c. nestorctl's commands ---

def help_text(exe):
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        fail(exe, "--help exited with status %d" % r.returncode)
    return r.stdout


def long_options(text):
    return set(re.findall(r"(?<![\w-])--([a-z][a-z0-9-]*)", text))


def short_pairs(text):
    """{long: short} for '-c, --config' (in help or in a page's '*-c, --config*')."""
    return {l: s for s, l in re.findall(r"(?<![\w-])-(\w), --([a-z][a-z0-9-]*)", text)}


def sections(scd):
    """{SECTION: its text} of an scdoc page ('## ' subsections stay in their section)."""
    out, name = {}, None
    for line in scd.splitlines():
        if line.startswith("# "):
            name = line[2:].strip()
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out


def check_options(page_path, scd, help_):
    sec = sections(scd)
    if "OPTIONS" not in sec:
        fail(page_path, "no OPTIONS section")
    text = sec.get("OPTIONS", "") + sec.get("COMMANDS", "")
    in_help, in_page = long_options(help_), long_options(text)
    for o in sorted(in_help - in_page):
        fail(page_path, "--%s is in --help but not in OPTIONS or COMMANDS" % o)
    for o in sorted(in_page - in_help):
        fail(page_path, "--%s is documented but not in the program's --help" % o)
    hp, pp = short_pairs(help_), short_pairs(text)
    for o in sorted(hp.keys() | pp.keys()):
        if o in hp and o in pp and hp[o] != pp[o]:
            fail(page_path, "--%s is -%s in --help but -%s in the page" % (o, hp[o], pp[o]))
        elif o in hp and o in in_page and o not in pp:
            fail(page_path, "--%s has the short option -%s: write '-%s, --%s'"
                 % (o, hp[o], hp[o], o))
    return len(in_help)


def usage_commands(help_):
    """nestorctl's commands: the leading lowercase words of its 'Commands:' lines."""
    block = help_.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    cmds = set()
    for line in block.splitlines():
        m = re.match(r"  (\S.*)", line)
        if not m or line.startswith("   "):
            continue  # a continuation line
        words = []  # the command's own column ends at a run of spaces
        for w in re.split(r"\s{2,}", m.group(1))[0].split():
            if not re.fullmatch(r"[a-z]+", w):
                break
            words.append(w)
        cmds.add(" ".join(words))
    return cmds


def check_commands(src, page_path, scd, help_):
    cmds = usage_commands(help_)
    table = set(re.findall(r'\{"(\w+)", cmd_\w+\}', read(src, "broker/nestorctl.c")))
    for c in sorted(table - {c.split()[0] for c in cmds}):
        fail("broker/nestorctl.c", "command '%s' is in the command table but not in the usage" % c)
    terms = set()
    for line in sections(scd).get("COMMANDS", "").splitlines():
        m = re.match(r"\*([^*]+)\*", line)
        if m and not m.group(1).startswith("-"):
            terms.add(m.group(1).strip())
    for c in sorted(cmds - terms):
        fail(page_path, "command '%s' is in nestorctl's usage but not in COMMANDS" % c)
    for c in sorted(terms - cmds):
        fail(page_path, "command '%s' is in COMMANDS but not in nestorctl's usage" % c)
    return len(cmds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", required=True, help="the source tree")
    ap.add_argument("--program", nargs=2, action="append", default=[],
                    metavar=("EXE", "PAGE"), help="a built program and its page's source")
    args = ap.parse_args()

    keys = check_config(args.src)
    options = commands = 0
    for exe, page in args.program:
        help_ = help_text(exe)
        page_path = os.path.relpath(page, args.src)
        with open(page, encoding="utf-8") as f:
            scd = f.read()
        options += check_options(page_path, scd, help_)
        if os.path.basename(exe) == "nestorctl":
            commands = check_commands(args.src, page_path, scd, help_)
    if not args.program:
        fail("check-docs.py", "no --program given")
    elif commands == 0:
        fail("check-docs.py", "nestorctl was not among the programs: its commands went unchecked")
    for p in problems:
        print("FAIL " + p)
    if problems:
        print("%d problem(s): the documentation and the code disagree" % len(problems))
        return 1
    print("ok: %d configuration keys, %d options, %d nestorctl commands"
          % (keys, options, commands))
    return 0


if __name__ == "__main__":
    sys.exit(main())
