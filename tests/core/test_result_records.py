"""Typed result records round-trip through JSON, carry a schema version, and refuse what they cannot read."""
from __future__ import annotations

import json

import pytest

from treefuse.errors import TreefuseError
from treefuse.results import (RESULT_TYPES, SCHEMA_VERSION, BenchResult, EvaluateResult, ParityResult, SweepResult,
                              result_from_json)

DEVICE = {"cpu": {"model": "test CPU", "logical_cores": 2, "isa_flags": ["avx2"]}, "gpus": []}


@pytest.mark.parametrize("record", [
    ParityResult(device=DEVICE, passed=True, gates={"min_output_psnr_db": 60.0}),
    BenchResult(device=DEVICE, size=[64, 64], backends=[{"kind": "onnx", "artifact": {"format": "onnx"}}]),
    SweepResult(device=DEVICE, sizes=[[64, 64]]),
    EvaluateResult(device=DEVICE, count=3, mean={"psnr_y_db": 24.0}),
])
def test_a_record_round_trips_through_json(record):
    data = json.loads(json.dumps(record.to_json()))
    assert data["kind"] == record.KIND and data["schema_version"] == SCHEMA_VERSION
    assert result_from_json(data) == record


def test_a_newer_schema_and_a_foreign_kind_are_refused_in_one_line():
    data = ParityResult(device=DEVICE).to_json()
    with pytest.raises(TreefuseError, match="newer than this treefuse reads") as error:
        result_from_json({**data, "schema_version": SCHEMA_VERSION + 1}, "p.json")
    assert "\n" not in str(error.value)
    with pytest.raises(TreefuseError, match="not a treefuse result"):
        result_from_json({"kind": "something-else"}, "x.json")
    with pytest.raises(TreefuseError, match="missing device"):
        result_from_json({"kind": "treefuse-bench"}, "b.json")


def test_files_from_treefuse_0_1_still_load():
    data = {"kind": "treefuse-sweep", "format": "treefuse-sweep-v1", "device": DEVICE, "cells": [], "backends": []}
    assert isinstance(result_from_json(data), SweepResult)


def test_every_result_kind_has_a_command_to_regenerate_it():
    assert all(cls.COMMAND.startswith("treefuse ") for cls in RESULT_TYPES.values())
