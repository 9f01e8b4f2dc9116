#!/usr/bin/env python3
"""Check that every relative link in README.md and docs/src/**/*.md resolves.

A link resolves when the file (or directory) it names exists and, if it has a
#fragment, the target page has a heading with that anchor. Anchors follow the
renderer that shows the page holding the link: GitHub's rules for README.md,
mdBook's for the book (docs/src). Links from the book must stay inside
docs/src: mdBook publishes nothing else, so a link to ../../Makefile works in
a checkout and is broken on the published site.

Absolute URLs (http:, https:, mailto:, ...) are not fetched. Code blocks and
code spans are skipped. Exit status 1 lists every broken link; 0 prints the
count. Python 3 standard library only.

Usage: tests/docs/check-links.py [REPO_ROOT]
"""

import re
import sys
import unicodedata
from pathlib import Path

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
HTML_ID = re.compile(r"""<[^>]*\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.I)
# [text](target "title") and ![alt](target); target may be <...>.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^()\s]*(?:\([^()\s]*\)[^()\s]*)*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def outside_fences(lines):
    """Yield (line number, line) of the lines outside fenced code blocks."""
    fence = None
    for number, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        yield number, line


def strip_code(lines):
    """Yield (line number, text) outside fenced code, with code spans blanked."""
    for number, line in outside_fences(lines):
        yield number, CODE_SPAN.sub(lambda s: " " * len(s.group(0)), line)


def heading_text(raw):
    """The text a renderer shows for a heading's markdown."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", raw)  # links -> their text
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), text)
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.replace("*", "")
    return text.strip()


def slug_mdbook(text):
    # mdBook's normalize_id: alphanumerics, '_' and '-' kept (lowercased),
    # whitespace becomes '-', everything else is dropped.
    out = []
    for ch in text:
        if ch.isalnum() or ch in "_-":
            out.append(ch.lower())
        elif ch.isspace():
            out.append("-")
    return "".join(out)


def slug_github(text):
    # GitHub: lowercase; drop punctuation except '-' and '_'; spaces -> '-'.
    out = []
    for ch in text.lower():
        if ch in "_-" or ch.isalnum() or unicodedata.category(ch).startswith("M"):
            out.append(ch)
        elif ch == " ":
            out.append("-")
    return "".join(out)


def anchors(path, slug):
    """Every anchor a page offers under the given slug rule."""
    found, seen = set(), {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for _, line in outside_fences(lines):
        for html_id in HTML_ID.findall(line):
            found.add(html_id)
        h = HEADING.match(line)
        if not h:
            continue
        base = slug(heading_text(h.group(2)))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]).resolve()
    book = root / "docs" / "src"
    pages = [root / "README.md"] + sorted(book.rglob("*.md"))
    cache = {}
    broken, checked, with_anchor = [], 0, 0

    for page in pages:
        in_book = book in page.parents
        slug = slug_mdbook if in_book else slug_github
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in strip_code(lines):
            targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
            ref = REF_DEF.match(line)
            if ref:
                targets.append(ref.group(1))
            for target in targets:
                target = target.strip("<>")
                if not target or SCHEME.match(target) or target.startswith("//"):
                    continue
                checked += 1
                where = f"{page.relative_to(root)}:{number}: {target}"
                path_part, _, fragment = target.partition("#")
                path_part = path_part.split("?", 1)[0]
                dest = (page.parent / path_part).resolve() if path_part else page
                if not dest.exists():
                    broken.append(f"{where}: no such file {dest.relative_to(root) if root in dest.parents else dest}")
                    continue
                if in_book and book not in dest.parents and dest != book:
                    broken.append(f"{where}: outside docs/src, so not in the published book")
                    continue
                if not fragment:
                    continue
                with_anchor += 1
                if dest.is_dir() or dest.suffix != ".md":
                    broken.append(f"{where}: an anchor into a file that is not a markdown page")
                    continue
                key = (dest, slug)
                if key not in cache:
                    cache[key] = anchors(dest, slug)
                if fragment not in cache[key]:
                    broken.append(f"{where}: no heading with anchor #{fragment} in {dest.relative_to(root)}")

    for line in broken:
        print(f"broken: {line}")
    print(f"check-links: {len(pages)} pages, {checked} relative links ({with_anchor} with an anchor), {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
