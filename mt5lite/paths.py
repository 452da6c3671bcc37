"""Where the project keeps its bundled files."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The bundled demo model, the default ``--model`` of every command.
DEMO_MODEL = REPO_ROOT / "models" / "demo"
#: Generated artefacts (ignored by git).
BUILD_DIR = REPO_ROOT / "build"
