"""The documentation: short README, links that resolve, no citation of files outside the repo."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Files and folders whose text may not cite a design file outside the repository.
CHECKED = ("README.md", "docs", "case_studies", "benchmarks", "neurodyn", "tests")
README_MAX_LINES = 200
DESIGN_FILE = "DESIGN" + ".md"  # spelt apart so that this file does not cite it

# [text](target) in Markdown, not images' alt text; the target up to a space or ")".
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def tracked(*paths: str) -> list[Path]:
    """Tracked files under ``paths`` (git ls-files); the files on disk without git."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--", *paths],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        found = []
        for p in paths:
            q = ROOT / p
            found += [q] if q.is_file() else [f for f in q.rglob("*") if f.is_file()]
        return found
    return [ROOT / line for line in out.splitlines() if line]


def markdown_pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(text: str) -> list[str]:
    """Link targets that point into the repository (no scheme, no pure #anchor)."""
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target)
    return targets


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings (lower case, punctuation dropped, spaces
    to hyphens)."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)  # no code blocks
    headings = re.findall(r"^#+\s+(.+?)\s*$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_anchors_follow_github():
    page = ROOT / "docs" / "results" / "case_studies.md"
    assert "the-bifurcation-study-against-the-papers-table-1" in anchors(page)


def test_relative_links_parse():
    text = "see [a](docs/a.md#x), [web](https://x.org), [here](#top) and [b](../b.md)"
    assert relative_links(text) == ["docs/a.md#x", "../b.md"]


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_docs_pages_exist():
    for name in ("design.md", "cli.md", "workflow.md"):
        assert (ROOT / "docs" / name).is_file(), name


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = page.read_text()
    missing = []
    for target in relative_links(text):
        path, _, anchor = target.partition("#")
        linked = page.parent / path if path else page
        if not linked.exists():
            missing.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            missing.append(target)
    for anchor in re.findall(r"\]\(#([^)\s]+)\)", text):
        if anchor not in anchors(page):
            missing.append("#" + anchor)
    assert not missing, f"{page.relative_to(ROOT)}: links to missing files or headings {missing}"


def test_no_citation_of_design_file_outside_repo():
    offenders = [
        str(f.relative_to(ROOT))
        for f in tracked(*CHECKED)
        if f.is_file() and DESIGN_FILE in f.read_text(errors="ignore")
    ]
    assert not offenders, f"files citing {DESIGN_FILE}: {offenders}"
