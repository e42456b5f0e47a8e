"""Mutations a fuzzer makes to a file: bit flips, truncation, inserted bytes and zeroed blocks."""
from __future__ import annotations

import numpy as np

MUTATIONS = ("flip", "truncate", "insert", "zero")


def mutate(data: bytes, how: str, rng: np.random.Generator, head: int | None = None) -> bytes:
    """`data` changed once by `how`, at a random place (within the first `head` bytes when given)."""
    position = int(rng.integers(0, min(len(data), head or len(data))))
    if how == "flip":
        changed = bytearray(data)
        changed[position] ^= 1 << int(rng.integers(0, 8))
        return bytes(changed)
    if how == "truncate":
        return data[:position]
    if how == "insert":
        return data[:position] + bytes(rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8)) + data[position:]
    length = int(rng.integers(1, 64))
    return data[:position] + bytes(min(length, len(data) - position)) + data[position + length:]


def mutants(data: bytes, count: int, seed: int, head: int | None = None):
    """`count` mutated copies of `data`, cycling through every mutation."""
    rng = np.random.default_rng(seed)
    for trial in range(count):
        yield trial, MUTATIONS[trial % len(MUTATIONS)], mutate(data, MUTATIONS[trial % len(MUTATIONS)], rng, head)
