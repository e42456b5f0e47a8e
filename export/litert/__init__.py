"""LiteRT models on XNNPACK: export (converted in .venv-litert), options and the bundle engine."""
