"""Primitives: paths, settings-free helpers and plain value types; nothing here imports from another layer."""
