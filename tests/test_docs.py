"""The documentation's shape: a short README as the front door, every page of docs/ reachable
from it by links, and no relative link pointing at a file that is not there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _local_links(page: Path) -> list[Path]:
    targets = (match.group(1) for match in LINK.finditer(page.read_text()))
    return [(page.parent / t).resolve() for t in targets if "://" not in t]


def test_readme_is_a_short_front_door() -> None:
    assert len(README.read_text().splitlines()) < 300


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    seen, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md":
            continue
        seen.add(page)
        todo.extend(_local_links(page))
    pages = {page.resolve() for page in (ROOT / "docs").glob("*.md")}
    assert pages, "docs/ holds the reference pages"
    assert sorted(str(p.relative_to(ROOT)) for p in pages - seen) == []


def test_relative_links_resolve() -> None:
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    broken = [
        f"{page.relative_to(ROOT)} -> {target}"
        for page in pages
        for target in _local_links(page)
        if not target.exists()
    ]
    assert broken == []
