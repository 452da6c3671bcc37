"""mT5 Lite: make multilingual T5 models small and fast, and prove each stage still computes the same."""

__version__ = "0.1.0"
