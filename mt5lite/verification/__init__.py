"""Verification (layer 3): the one teacher-forced comparator, parity against PyTorch, export comparison and the
quality gate, evaluation. Imports core and runtimes, never exporters, compression or the CLI."""
