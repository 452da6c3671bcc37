"""Where the files bundled with the package are: the multilingual data, the demo model and the natural model.

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
#: The natural model (``mt5lite train-natural``, ``make natural-model``): committed in the source tree's
#: ``models/natural`` (14.2 MB, stored in float16) for ``make natural-demo`` and the tests, but not in the wheel,
#: which ships only the demo model.
NATURAL_MODEL = _bundled("mt5lite.bundled_models", "natural")
