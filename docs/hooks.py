"""MkDocs hooks: the site's home page is the README, its links to ``docs/`` pages made relative to the site."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """The home page (``index.md``) is replaced by the README, with ``docs/X.md`` links pointing at ``X.md``."""
    if page.file.src_uri != "index.md":
        return markdown
    return re.sub(r"\]\(docs/", "](", README.read_text(encoding="utf-8"))
