"""The thread pools of an export's ONNX Runtime sessions (``mt5lite.runtimes.ort_threads``): pools of their own
that do not spin, or, in a process that runs nothing but exports and says so (``claim_process``), ONNX Runtime's
global pools, shared by every session. Each case runs in a fresh process, since the global pools are the process's."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT

TEXTS = ["words en: 1234", "words fr: 77", "number de: dreihundert", "words ja: 9"]


def _run(script: str) -> dict:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _decode(export, setup: str) -> dict:
    """Decode ``TEXTS`` with 2 beams in a fresh process after ``setup``; the sessions' pool settings and outputs."""
    return _run(f"""
        import json
        from mt5lite.runtimes.generators import claim_process, open_export
        from mt5lite.runtimes.options import DecodingOptions

        {setup}
        generator = open_export({str(export)!r}, threads=2)
        options = generator.backend.options
        print(json.dumps({{
            "per_session": options.use_per_session_threads,
            "spinning": options.get_session_config_entry("session.intra_op.allow_spinning")
                        if options.use_per_session_threads else None,
            "outputs": generator.generate({TEXTS!r}, DecodingOptions(max_new_tokens=16, num_beams=2))}}))
    """)


def test_a_process_of_exports_alone_shares_the_global_pools_and_decodes_alike(demo_export):
    own = _decode(demo_export, "")
    shared = _decode(demo_export, f"claim_process({str(demo_export)!r}, 2)")
    made_elsewhere = _decode(demo_export, "from onnxruntime.capi.onnxruntime_pybind11_state import "
                                          "set_global_thread_pool_sizes; set_global_thread_pool_sizes(3, 1); "
                                          f"claim_process({str(demo_export)!r}, 2)")
    assert own["per_session"] is True and own["spinning"] == "0"  # a library in someone's process: its own pools
    assert shared["per_session"] is False and made_elsewhere["per_session"] is False
    assert own["outputs"] == shared["outputs"] == made_elsewhere["outputs"] and all(own["outputs"])


def test_a_checkpoint_claims_nothing(tmp_path):
    found = _run(f"""
        import json, sys
        from mt5lite.runtimes.generators import claim_process
        claim_process({str(tmp_path)!r}, 2)
        print(json.dumps({{"onnxruntime": "onnxruntime" in sys.modules}}))
    """)
    assert found == {"onnxruntime": False}
