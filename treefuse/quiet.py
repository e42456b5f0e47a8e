"""Third-party chatter kept off stderr: stderr belongs to treefuse's one error line or a bug's traceback.

Runtimes and converters write to stderr from Python (loggers, `print`, progress bars) and from C++
(absl, XNNPACK, cpuinfo). `held_stderr` holds both back around one call: on success or on a
user-fixable error they are dropped, and if a bug escapes they are replayed before its traceback.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

from treefuse.errors import TreefuseError

# Loggers that warn on import about parts this product does not use (macOS-only Core ML
# proxies, torchao's CUDA kernels, torch's deprecation of an enum registration).
IMPORT_LOGGERS = ("coremltools", "torchao", "torch.utils._pytree", "executorch")
# C++ logging of TensorFlow-derived runtimes (LiteRT, OpenVINO's frontends): errors only.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2"}


@contextlib.contextmanager
def quiet_import() -> Iterator[None]:
    """Import a third-party backend without its import-time warnings (loggers at ERROR, C stderr held)."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    loggers = [logging.getLogger(name) for name in IMPORT_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        # Only the file descriptor: a handler a library builds now must keep the real sys.stderr. Python
        # warnings on import (ExecuTorch's "experimental API") are the library's notes to itself, not ours.
        with _held_fd(python_too=False), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def held_stderr(expected: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Hold back what a third-party call writes to stderr; replay it only if a bug escapes.

    `expected`: the library's own errors for a bad input, which the caller reports in one line (a
    TreefuseError always is one)."""
    with _held_fd(python_too=True, expected=expected):
        yield


@contextlib.contextmanager
def _held_fd(python_too: bool, expected: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """File descriptor 2 (and, with `python_too`, sys.stderr) into a buffer for the duration."""
    sys.stderr.flush()
    python_held = io.StringIO()
    with tempfile.TemporaryFile() as c_held:
        saved_fd = os.dup(2)
        os.dup2(c_held.fileno(), 2)
        replay = False
        try:
            with contextlib.redirect_stderr(python_held) if python_too else contextlib.nullcontext():
                yield
        except (TreefuseError, *expected):
            raise
        except BaseException:
            replay = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            if replay:  # a bug's traceback follows: show what the library said first
                c_held.seek(0)
                os.write(2, c_held.read())
                sys.stderr.write(python_held.getvalue())
