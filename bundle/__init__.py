"""Device bundles: an artifact with golden inputs and outputs, run on the camera without torch or treefuse.

`pack.py` makes a bundle on the workstation; the runner it ships is `treefuse/portable/`
(copied in as `bundle_runner/`), the same code treefuse judges and times with; `verify.py`
checks a device's result against its bundle; `arm64_root.sh` and `arm64_check.py` prove it
on Arm64 here.
"""
