"""Benchmarks of the toolkit: a package, run from the checkout's root with ``python -m`` (every module imports the
others as ``benchmarks.*`` and the models they build from ``tests.fixtures``, which the wheel does not ship).

``make bench`` and what it runs live here:

- ``bench``: the driver (``python -m benchmarks.bench``): every system on every model, side by side;
- ``bench_worker``: one system in its own process, driven by ``bench`` over a pipe;
- ``bench_systems``: the registry of systems, one module per family (ours and the peers);
- ``peer_envs``: the peers' own virtual environments; ``bench_report``: its JSON, Markdown and plots;
- ``models``: the checkpoints it measures besides the demo model (mt5-small's shape, trimmed, the lite student);
- ``timing``: forced-length decoding and side-by-side timing, shared with the experiments;
- ``results_pages``: ``make results``, the documentation's result pages rendered from the reports.

``benchmarks.experiments`` holds the one-off experiments, each with a ``make`` target of its own; they build on
the modules above, never the other way round.
"""
