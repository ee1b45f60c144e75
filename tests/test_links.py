"""Every relative link in the repository's Markdown resolves in a fresh clone (no ../shared)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestration.core.settings import PROJECT_ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SKIPPED = {".venv", ".stripe-sync", "target", "logs", "node_modules", ".git"}


def _markdown_files() -> list[Path]:
    return sorted(
        p
        for p in PROJECT_ROOT.rglob("*.md")
        if not SKIPPED & set(p.relative_to(PROJECT_ROOT).parts)
    )


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    text = path.read_text()
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#!/"):
            continue  # http(s) and mailto: not checked here; #!/ are dbt docs' own routes
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists() or (PROJECT_ROOT not in linked.parents and linked != PROJECT_ROOT):
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.MULTILINE)
            if anchor not in {_anchor(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{path.relative_to(PROJECT_ROOT)}: {broken}"


def test_the_markdown_files_include_the_readme_and_the_contract() -> None:
    names = {str(p.relative_to(PROJECT_ROOT)) for p in _markdown_files()}
    assert {"README.md", "docs/contract.md"} <= names
