"""The torch-free pieces a device runs: PSNR, gate judging, latency summary, device facts, bundle manifest.

Only the standard library and numpy, and only relative imports between these modules:
`treefuse pack` copies this folder into every device bundle (as `bundle_runner/`), where it
runs without treefuse installed, and treefuse itself uses the same modules, so a verdict on
the camera is computed by the same code as on the workstation.
"""
