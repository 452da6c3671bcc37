"""The thread pools an export's ONNX Runtime sessions run on. Imports only onnxruntime.

An export runs several sessions in turn: the encoder, then a decoder step per token, each batch size and
source-length bucket its own graph. With a thread pool per session, the workers of one pool spin after its run and
hold the cores the next session needs (on 2 cores, the encoder then the first step took 25 + 16 ms spinning against
15 + 10 ms not), so per-session pools must not spin, and then every node wakes its workers from sleep: the
weight-int8 step of mt5-small's shape took 6.3 ms against 4.5 spinning. One pool for the whole process, ONNX
Runtime's global thread pools, has neither cost: its workers spin, and whichever session runs next finds them
(mt5-small's shape, 2 threads, one process per setting, taking turns: weight-int8 step 4.5 against 6.3 ms, time to
first token of a 16-token input 9.2 against 10.4 ms; static int8 7.5 against 8.2 and 12.0 against 12.5).

ONNX Runtime's global pools are the process's, though: once they exist, it refuses every session with pools of its
own (its quantizer's included). So an export's sessions share them only where an application that runs nothing but
exports asks for them (``share_global_pools``: ``mt5lite generate`` and ``evaluate``, the benchmarks' timed
processes); everywhere else each session has pools of its own, which do not spin.
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
#: Whether this process's ONNX Runtime sessions run on its global thread pools (``share_global_pools``).
_global: list[bool] = []


def share_global_pools(threads: int | None) -> None:
    """Run every ONNX Runtime session this process makes from now on on ONNX Runtime's global thread pools,
    ``threads`` intra-op threads (None: ONNX Runtime's default); where the process has them already (made before,
    by this call or other code), on those. For an application that only runs exports: ONNX Runtime then refuses
    any session with pools of its own."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, set_global_thread_pool_sizes

    with _LOCK:
        if not _global:
            try:
                set_global_thread_pool_sizes(threads or 0, 1)
            except Fail:  # made before, by other code: sessions must use them
                pass
            _global.append(True)


def session_options(threads: int | None):
    """ONNX Runtime ``SessionOptions`` for a session of an export run with ``threads`` intra-op threads (None: ONNX
    Runtime's default): on the process's global thread pools after ``share_global_pools`` (at their size), else on
    pools of its own that do not spin; every graph optimization on, warnings off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if _global:
        options.use_per_session_threads = False
    else:
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options
