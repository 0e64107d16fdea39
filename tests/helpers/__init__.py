"""Helpers the tests share, importable as `helpers.<module>` (the tests directory is on the path)."""
