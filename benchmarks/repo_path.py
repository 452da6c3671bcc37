"""Put the checkout's root on ``sys.path`` (imported for that effect), so a benchmark run as a script
(``python benchmarks/X.py``) finds ``tests.fixtures`` and ``tests.outlier_fixtures``: the models the benchmarks
build, which the wheel does not ship."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
