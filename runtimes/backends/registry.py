"""Backends named on the command line as KIND:PATH, resolved lazily to Runner classes."""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from treefuse.errors import TreefuseError
from treefuse.formats import formats_by_kind
from treefuse.runtimes.backends.base import Runner


def backends() -> dict[str, tuple[str, str, str]]:
    """kind -> (module, class, what the artifact is), read off the one format table when asked."""
    return {kind: (*fmt.runner.split(":"), f"{fmt.description} ({fmt.suffix})") for kind, fmt in formats_by_kind().items()}


def parse_backend(spec: str) -> tuple[str, Path]:
    """Split 'KIND:PATH' and check the kind is one treefuse knows."""
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise TreefuseError(f"backend {spec!r} must be KIND:PATH, e.g. torch:weights.safetensors or onnx:model.onnx")
    if kind not in backends():
        raise TreefuseError(f"unknown backend kind {kind!r} in {spec!r}; known kinds: {', '.join(backends())}")
    if kind == "torch":  # torch:default names the shipped weights, as --weights default does
        from treefuse.checkpoint import resolve_weights

        return kind, resolve_weights(path)
    return kind, Path(path)


def split_spec_options(spec: str) -> tuple[str, dict[str, object]]:
    """'KIND:PATH?key=value,key=value' -> ('KIND:PATH', options); values become int/float/bool when they read so."""
    base, sep, query = spec.partition("?")
    options: dict[str, object] = {}
    for item in filter(None, query.split(",")) if sep else ():
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise TreefuseError(f"backend option {item!r} in {spec!r} must be key=value, e.g. ?precision=bf16")
        options[key.strip()] = _option_value(value.strip())
    return base, options


def _option_value(text: str) -> object:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def make_runner(spec: str, **options: object) -> Runner:
    """The Runner for a 'KIND:PATH[?key=value,...]' spec (not yet activated); spec options win."""
    base_spec, spec_options = split_spec_options(spec)
    kind, path = parse_backend(base_spec)
    module_name, class_name, _ = backends()[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("treefuse"):
            raise TreefuseError(f"backend {kind!r} is not available in this version of treefuse") from None
        raise
    if not path.exists():
        raise TreefuseError(f"{kind}: artifact not found: {path}")
    runner_class = getattr(module, class_name)
    # Options such as `threads` go only to runners that take them (CoreML has no thread knob).
    accepted = inspect.signature(runner_class.__init__).parameters
    unknown = sorted(set(spec_options) - set(accepted) - {"self"})
    if unknown:
        known = [name for name in accepted if name not in ("self", "path")]
        raise TreefuseError(f"{kind}: unknown backend option(s) {unknown}; this backend takes {known}")
    options = {k: v for k, v in options.items() if k in accepted}
    runner = runner_class(path, **{**options, **spec_options})
    runner.spec = spec  # as typed, options included: tables tell two options of one artifact apart
    return runner
