#!/usr/bin/env python3
"""Turn one of nestor's markdown references into an scdoc man page.

The markdown file stays the single source (docs/configuration.md becomes
nestor.conf(5)); this script knows only the markdown those files use:

- the first "# Title" is dropped; the page's NAME, SYNOPSIS and SEE ALSO
  come from the command line, the text before the first "##" becomes
  DESCRIPTION;
- "## Heading" is a section, "### Heading" a subsection;
- paragraphs and "- " lists; fenced code blocks (```);
- tables: each row becomes a term (the first column) with the middle
  columns in parentheses ("default: ...") and the last column as its text;
- inline `code` (bold), *emphasis* (underlined), **strong** (bold),
  [links](url) (their text).

Anything else that scdoc would misread (an indented code block, a line
starting with ".") is an error: fix the markdown, do not guess.
"""
import argparse
import re
import sys

INLINE = re.compile(
    r"`(?P<code>[^`]+)`"
    r"|\[(?P<text>[^\]]+)\]\((?P<url>[^)]+)\)"
    r"|\*\*(?P<strong>.+?)\*\*"
    r"|\*(?P<em>[^*\s][^*]*)\*"
)


class Md2ScdError(Exception):
    pass


def escape(text):
    """Plain text for scdoc: its formatting characters made literal."""
    return re.sub(r"([\\*_])", r"\\\1", text)


def inline(text, plain=False):
    """Markdown inline markup to scdoc; PLAIN: inside bold or underline (no nesting)."""
    out, pos = [], 0
    for m in INLINE.finditer(text):
        out.append(escape(text[pos:m.start()]))
        pos = m.end()
        if m.group("code") is not None:
            code = escape(m.group("code"))
            out.append(code if plain else "*" + code + "*")
        elif m.group("text") is not None:
            out.append(inline(m.group("text"), plain))
        elif m.group("strong") is not None:
            inner = inline(m.group("strong"), True)
            out.append(inner if plain else "*" + inner + "*")
        else:
            inner = inline(m.group("em"), True)
            out.append(inner if plain else "_" + inner + "_")
    out.append(escape(text[pos:]))
    return "".join(out)


def line_start(text):
    """TEXT as the start of an scdoc line: nothing it would take for a list or a table."""
    if text.startswith("."):
        raise Md2ScdError("a line would start with '.' (scdoc cannot print that): " + text)
    if text[:1] in ("-", ":", "|", "#", "["):
        return "\\" + text
    return text


def heading_text(text):
    """scdoc headings are raw text: markup, links and quotes dropped; words in capitals."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", text)
    text = re.sub(r'[`*"]', "", text).strip()
    return text.upper() if re.fullmatch(r"[A-Za-z ]+", text) else text  # not "[caps]"


def cells(row):
    return [c.strip() for c in row.strip().strip("|").split("|")]


def table(rows):
    """A markdown table as scdoc terms: the first column, (the middle ones), the last."""
    head = cells(rows[0])
    if len(rows) < 2 or not re.fullmatch(r"[\s|:-]+", rows[1]):
        raise Md2ScdError("a table needs a header and a |---| line: " + rows[0])
    out = []
    for row in rows[2:]:
        c = cells(row)
        if len(c) != len(head):
            raise Md2ScdError("a row with %d cells in a table of %d: %s" % (len(c), len(head), row))
        notes = []
        for name, value in zip(head[1:-1], c[1:-1]):
            if re.fullmatch(r"\([^()]*\)", value):
                value = value[1:-1]  # "(none)" reads "default: none"
            if value:
                notes.append(escape(name.lower()) + ": " + inline(value))
        term = line_start(inline(c[0]))
        if notes:
            term += " (" + "; ".join(notes) + ")"
        out.append(term + "\n")
        if len(head) > 1 and c[-1]:
            out.append("\t" + inline(c[-1]) + "\n")
        out.append("\n")
    return out


def convert(lines):
    """Markdown lines to scdoc: (the DESCRIPTION's lines, the sections' lines)."""
    intro, body = [], []
    out, i, titled = intro, 0, False
    while i < len(lines):
        line = lines[i].rstrip("\n")
        if not line.strip():
            i += 1
        elif line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            if j == len(lines):
                raise Md2ScdError("a code block is not closed: line %d" % (i + 1))
            out.append("```\n")
            out.extend(l.rstrip("\n").replace("\\", "\\\\") + "\n" for l in lines[i + 1:j])
            out.append("```\n\n")
            i = j + 1
        elif re.match(r"#{1,6} ", line):
            level, text = line.split(" ", 1)
            if len(level) == 1 and not titled:
                titled = True  # the document's title: the page has its own NAME
            elif len(level) == 1:
                raise Md2ScdError("a second '# ' title: " + line)
            else:
                out = body
                out.append(("# " if len(level) == 2 else "## ") + heading_text(text) + "\n\n")
            i += 1
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.extend(table(lines[i:j]))
            i = j
        elif line.startswith("    ") or line.startswith("\t"):
            raise Md2ScdError("an indented code block (use ```): line %d" % (i + 1))
        else:
            j = i
            while (j < len(lines) and lines[j].strip() and not lines[j].startswith(("```", "|"))
                   and not re.match(r"#{1,6} ", lines[j])):
                j += 1
            para = [l.strip() for l in lines[i:j]]
            if para[0].startswith("- "):
                items = []
                for l in para:
                    if l.startswith("- "):
                        items.append(l[2:])
                    else:
                        items[-1] += " " + l
                out.extend("- " + inline(it) + "\n" for it in items)
            else:
                out.append(line_start(inline(" ".join(para))) + "\n")
            out.append("\n")
            i = j
    return intro, body


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input", help="the markdown file")
    ap.add_argument("-o", "--output", help="the scdoc file (default: stdout)")
    ap.add_argument("--name", required=True, help="the page's name, e.g. nestor.conf")
    ap.add_argument("--section", required=True, help="the manual section, e.g. 5")
    ap.add_argument("--purpose", required=True, help="NAME's line after the dash")
    ap.add_argument("--synopsis", required=True, help="SYNOPSIS, in scdoc")
    ap.add_argument("--see-also", help="SEE ALSO, in scdoc")
    ap.add_argument("--footer", default="", help="the page's footer, e.g. 'nestor 0.1.0'")
    args = ap.parse_args()

    with open(args.input, encoding="utf-8") as f:
        lines = f.readlines()
    try:
        intro, body = convert(lines)
    except Md2ScdError as e:
        sys.exit("md2scd: %s: %s" % (args.input, e))
    page = ['%s(%s) "%s"\n\n' % (args.name, args.section, args.footer.replace('"', "")),
            "# NAME\n\n", "%s - %s\n\n" % (args.name, escape(args.purpose)),
            "# SYNOPSIS\n\n", args.synopsis + "\n\n", "# DESCRIPTION\n\n"]
    page += intro + body
    if args.see_also:
        page += ["# SEE ALSO\n\n", args.see_also + "\n"]
    text = "".join(page)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
