"""Packaging an export for the apps that ship it (the Android demo's assets)."""
