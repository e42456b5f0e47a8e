"""ExecuTorch programs on XNNPACK: export (PT2E, INT8 through export/pt2e/), options and the bundle engine."""
