"""One-off experiments, each answering one question once, apart from ``make bench``; run from the checkout's root
as ``python -m benchmarks.experiments.<name>``, each through its ``make`` target:

- ``outliers_demo``: int8 recipes on activation-outlier checkpoints (``make outliers-demo``, ``outliers-mt5-small``);
- ``bench_quantization``: int8 against fp32 and PyTorch, speed and size (``make bench-quantization``);
- ``conversion_memory``: peak memory of the full-int8 TFLite conversion (``make conversion-memory``), measured by
  ``peak_memory`` (also a command of its own);
- ``trim_mt5_small``: vocabulary trimming on mt5-small's shape (``make trim-mt5-small``);
- ``executorch_mt5_small``: ExecuTorch against our ONNX and TFLite builds (``make executorch-mt5-small``);
- ``lite_demo``: the lite recipe stage by stage (``make lite-demo``);
- ``families_demo``: the demo model as Flan-T5 and umT5 checkpoints (``make families-demo``);
- ``importance_demo``: pruning by importance against random pruning (``make importance-demo``);
- ``sparsity_demo``: magnitude pruning, sizes and speed (``make sparsity-demo``);
- ``bench_reference``: PyTorch eager's ms/token alone, the first baseline (no target: run it by hand).
"""
