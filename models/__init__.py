"""Models bundled with mt5lite (importable as ``mt5lite.bundled_models``; see ``mt5lite.paths``)."""
