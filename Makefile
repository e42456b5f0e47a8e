# treefuse: `make demo` sets up and runs the main job, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= outputs/demo

.PHONY: install install-litert install-rknn demo test test-fast test-journey bench browser clean arm64-check gpu-pack gpu-run

install: $(STAMP)

# setuptools' 10-line banner on every editable install (a folder named like the package is its source, on purpose).
EDITABLE_QUIET := PYTHONWARNINGS='ignore:Editable installation'

# torch is pinned to 2.13.0: that CPU build lies on disk here; any other spec downloads GBs.
$(STAMP): pyproject.toml setup.py treefuse/formats.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(EDITABLE_QUIET) $(BIN)/pip install -q -e '.[test,report,video,$(shell $(PYTHON) treefuse/formats.py)]'
	touch $(STAMP)

# LiteRT's converter (litert-torch) downgrades typing-extensions and pulls jax: its own venv, called as a subprocess.
install-litert: install
	$(PYTHON) -m venv .venv-litert && .venv-litert/bin/pip install -q torch==2.13.0 && $(EDITABLE_QUIET) .venv-litert/bin/pip install -q -e '.[litert-convert]'

# Rockchip's rknn-toolkit2 pins numpy<=1.26.4, onnx<=1.18, protobuf<=4.25.4 and torch<=2.4 (whose index wheel wants CUDA):
# its own venv, without treefuse, beside the local CPU torch; export/rknn/worker.py runs in it (docs/rknn.md).
RKNN_VENV ?= .venv-rknn
install-rknn:
	$(PYTHON) -m venv $(RKNN_VENV)
	$(RKNN_VENV)/bin/pip install -q torch==2.13.0
	$(RKNN_VENV)/bin/pip install -q --no-deps rknn-toolkit2==2.5.0
	$(RKNN_VENV)/bin/pip install -q numpy==1.26.4 'onnx>=1.16.1,<=1.18.0' 'protobuf>=4.21.6,<=4.25.4' 'onnxruntime>=1.17' \
		opencv-python-headless psutil ruamel.yaml scipy tqdm fast-histogram 'setuptools<81'
	$(RKNN_VENV)/bin/python -W ignore -c "from rknn.api import RKNN; RKNN()" >/dev/null

demo: install
	$(BIN)/python -m treefuse.demo --out $(DEMO)

# Two workers, one per core: the suite is mostly single-threaded conversions and subprocesses. A test file stays on one
# worker, so a module's exported fixtures are made once, not once per worker.
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not journey" -p no:cacheprovider

# The documented journeys run as written (docs/quickstart-int8.md): minutes each, so outside `make test`.
test-journey: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m journey

test-fast: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow and not journey" -p no:cacheprovider

bench: install
	$(BIN)/python benchmarks/onnx_vs_eager.py

# Device bundles of the shipped weights on x86 and on emulated Arm64 (needs root; minutes, not part of `test`).
# The arm64 Debian root and its wheels are cached in /var/cache/treefuse (ARM64_ROOT to move it).
ARM64_ROOT ?= /var/cache/treefuse/arm64-root
arm64-check: install
	bundle/arm64_root.sh $(ARM64_ROOT)
	$(BIN)/python -m treefuse.bundle.arm64_check --root $(ARM64_ROOT) --out reports/device

# Debian's Chromium for the headless-browser test of report.html (CI runs as root); skipped when absent.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# A lent GPU (docs/gpu_session.md): gpu-pack fills the git-ignored .gpu/ here (RESUME=TAR, INIT=W optional);
# gpu-run is the one command there (its own Python, nothing installed); OUT=DIR make gpu-run DRY_RUN=1 tries it here.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-pack:
	$(GPU_PYTHON) gpu/pack.py $(if $(RESUME),--resume $(RESUME)) $(if $(INIT),--init $(INIT))

gpu-run:
	$(GPU_PYTHON) gpu/run.py  # reads OUT, DRY_RUN, STEPS, GPU_SECONDS, TRAIN_SECONDS, GPU_DATA, INIT, RESUME

clean:
	rm -rf outputs .pytest_cache
