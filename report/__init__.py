"""Per-device reports: merge sweep/bench/parity results into Markdown and HTML, and verify their hash chain."""
