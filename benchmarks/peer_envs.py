"""Virtual environments of their own for peers whose pins clash with ours (optimum-intel) or that are compiled
from source (llama.cpp, through llama-cpp-python's source distribution, which vendors it).

Each environment lives in ``build/peers/<name>/venv``, holds mt5lite itself (editable, so the benchmark worker runs
there) and the peer, and is made once: a stamp records the requirements it was made with. A failure is
``Unavailable`` with pip's last line, so the peer stays in the table with its reason.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.bench_systems import Unavailable
from mt5lite.paths import BUILD_DIR
from mt5lite.registry import Registry

REPO = Path(__file__).resolve().parent.parent
PEERS = BUILD_DIR / "peers"
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"


def run_command(command: list, what: str, **options) -> str:
    """Run ``command``; ``Unavailable`` naming ``what`` and the last line of its output when it fails."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **options)
    if result.returncode:
        lines = (result.stderr or result.stdout).strip().splitlines() or [f"exit status {result.returncode}"]
        raise Unavailable(f"{what} failed: {lines[-1][:300]}")
    return result.stdout


def llama_cpp_source() -> Path:
    """llama-cpp-python's source distribution, unpacked (it vendors llama.cpp, its converter and gguf-py)."""
    name = LLAMA_CPP_PYTHON.replace("-", "_").replace("==", "-")
    root = PEERS / name
    if not (root / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py").is_file():
        PEERS.mkdir(parents=True, exist_ok=True)
        run_command([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
              LLAMA_CPP_PYTHON, "-d", PEERS], f"downloading {LLAMA_CPP_PYTHON}")
        with tarfile.open(PEERS / f"{name}.tar.gz") as archive:
            archive.extractall(PEERS, filter="data")
    return root


@dataclass(frozen=True)
class Environment:
    """A peer's own virtual environment: what to install besides mt5lite."""

    requirements: Callable[[], list[str]]  # pip arguments (computed: a source path may need fetching first)
    environment: dict = field(default_factory=dict)  # for pip (build options)
    remove: tuple[str, ...] = ()  # what pip pulls in but breaks the peer


ENVIRONMENTS: Registry[Environment] = Registry("peer environment", {
    # Compiled for this CPU (GGML_NATIVE): llama.cpp's own kernels, as a user building it here would get them.
    "llama-cpp": Environment(lambda: [str(llama_cpp_source())], {"CMAKE_ARGS": "-DGGML_NATIVE=ON"}),
    # optimum-intel pins its own optimum; transformers and torch are ours (the CPU torch from the local index).
    # torchvision comes along (through nncf) built for another torch, and breaks transformers' AutoProcessor.
    "openvino": Environment(lambda: ["optimum-intel[openvino,nncf]==2.2.0", "transformers==4.57.6", "torch==2.13.0"],
                            remove=("torchvision",)),
})


def python(name: str) -> Path:
    """The interpreter of environment ``name``, made first when missing or made with other requirements."""
    import os

    spec = ENVIRONMENTS[name]
    root = PEERS / name
    interpreter = root / "venv" / "bin" / "python"
    requirements = spec.requirements()
    stamp = hashlib.sha256("\n".join([*requirements, "remove:", *spec.remove]).encode()).hexdigest()
    if (root / "stamp").is_file() and (root / "stamp").read_text() == stamp and interpreter.is_file():
        return interpreter
    shutil.rmtree(root / "venv", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    run_command([sys.executable, "-m", "venv", root / "venv"], f"making the {name} environment")
    pip = [interpreter, "-m", "pip", "install", "--quiet"]
    run_command(pip + ["--upgrade", "pip"], f"upgrading pip in the {name} environment")
    env = {**os.environ, **spec.environment}
    run_command(pip + ["-e", REPO, *requirements], f"installing {' '.join(requirements)} into the {name} environment",
         env=env)
    if spec.remove:
        run_command([interpreter, "-m", "pip", "uninstall", "--yes", *spec.remove], f"removing {' '.join(spec.remove)}")
    (root / "stamp").write_text(stamp)
    return interpreter
