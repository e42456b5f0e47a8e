"""held_stderr: a library's stderr (C's file descriptor 2 and Python's sys.stderr) is dropped on success and on
the library's own bad-input errors, and replayed before a bug's traceback."""
from __future__ import annotations

import os
import sys

import pytest

from treefuse.errors import TreefuseError
from treefuse.quiet import held_stderr, quiet_import


def chatter() -> None:
    os.write(2, b"[cpuinfo_utils.cpp:71] from C\n")
    print("from Python", file=sys.stderr)


def test_dropped_on_success(capfd):
    with held_stderr():
        chatter()
    print("after", file=sys.stderr)
    assert capfd.readouterr().err == "after\n"


@pytest.mark.parametrize("error", [TreefuseError("bad file"), ValueError("the library's own")])
def test_dropped_on_an_expected_error(error, capfd):
    with pytest.raises(type(error)):
        with held_stderr((ValueError,)):
            chatter()
            raise error
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("bug", [MemoryError(), AssertionError("a bug")])
def test_replayed_when_a_bug_escapes(bug, capfd):
    with pytest.raises(type(bug)):
        with held_stderr((ValueError,)):
            chatter()
            raise bug
    err = capfd.readouterr().err
    assert "from C" in err and "from Python" in err


def test_quiet_import_holds_import_time_warnings(capfd):
    import logging

    before = logging.getLogger("torchao").level
    with quiet_import():
        logging.getLogger("torchao").warning("Failed to load _C_mxfp8.so")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    assert capfd.readouterr().err == ""
    assert logging.getLogger("torchao").level == before  # levels restored afterwards
