"""`treefuse export litert`'s own help; its options all come from the format table."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("examples:\n"
                     "  treefuse export litert --out m.tflite\n"
                     "  treefuse export litert --precision int8 --calib calib/ --out m.int8.tflite\n"
                     "  treefuse export litert --precision int8 --qat RUN --out m.int8.tflite   # a --target xnnpack-int8 run\n\n"
                     "Converted with litert-torch, which lives in its own venv (`make install-litert`: it would\n"
                     "downgrade typing-extensions here); set TREEFUSE_LITERT_PYTHON to use another one. The model is\n"
                     "converted at --size but runs at any H x W (the runner resizes its input). fp16 stores FP16\n"
                     "weights; int8 quantizes weights and activations (PT2E, calibrated on CALIB_DIR; with --qat RUN, the\n"
                     "weights and scales the run learned, as they are); input and output stay float32. Provenance goes\n"
                     "to OUT.json. Check it on other images with: treefuse parity --ref torch:W --cand litert:m.tflite "
                     "--images DIR")
