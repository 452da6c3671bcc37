"""Multilingual text bundled with mt5lite (importable as ``mt5lite.bundled_data``; see ``mt5lite.paths``)."""
