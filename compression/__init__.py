"""Compression passes, each ``(model, config) -> (model, report)``. None is built yet."""
