"""Where the files bundled with the package are: the multilingual data and the demo model.

They travel in the wheel as package data (``mt5lite.bundled_data`` is the ``data/`` folder of the source tree,
``mt5lite.bundled_models`` the ``models/`` folder), so the defaults work from any working directory, in an
editable install and in a regular one alike.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _bundled(package: str, *parts: str) -> Path:
    return Path(str(files(package).joinpath(*parts)))


#: The multilingual data shipped with the project (``data/`` in the source tree).
DATA_DIR = _bundled("mt5lite.bundled_data")
#: The bundled demo model, the default ``--model`` of every command.
DEMO_MODEL = _bundled("mt5lite.bundled_models", "demo")
#: Generated artefacts, relative to the working directory (ignored by git in the source tree).
BUILD_DIR = Path("build")
#: Where ``mt5lite train-natural`` (``make natural-model``) writes the natural model: a build artefact (28.3 MB),
#: not committed, since only the demo model is.
NATURAL_MODEL = BUILD_DIR / "natural"
