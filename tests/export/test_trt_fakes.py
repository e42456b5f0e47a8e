"""The TensorRT fakes take exactly the parameters of Polygraphy's real API, so a test passing on a fake
makes calls the real TensorRT backend accepts. Polygraphy imports TensorRT lazily: its signatures
can be read without TensorRT or a GPU."""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from trt_fakes import CONFIG_COMMON_OPTIONS, FakePolygraphy, FakeProfile, FakeTrtRunner, fake_runner_backend

pg = pytest.importorskip("polygraphy.backend.trt", reason="polygraphy is not installed (pip install 'treefuse[test]')")

FAKES = {
    "NetworkFromOnnxPath": FakePolygraphy().NetworkFromOnnxPath,
    "Calibrator": FakePolygraphy().Calibrator,
    "CreateConfig": FakePolygraphy().CreateConfig,
    "EngineBytesFromNetwork": FakePolygraphy().EngineBytesFromNetwork,
    "Profile": FakeProfile,
    "EngineFromBytes": fake_runner_backend().pg.EngineFromBytes,
    "TrtRunner": FakeTrtRunner,
}


def parameters(callable_) -> list[tuple[str, object, object]]:
    """(name, kind, default) of each parameter, self excluded (a bound method or a class leaves it out)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(callable_).parameters.values()]


@pytest.mark.parametrize("name", sorted(FAKES))
def test_fake_takes_exactly_the_real_parameters(name):
    assert parameters(FAKES[name]) == parameters(getattr(pg, name)), f"pg.{name} and its fake differ"


@pytest.mark.parametrize("method", ["add"])
def test_fake_profile_methods_match(method):
    assert parameters(getattr(FakeProfile(), method)) == parameters(getattr(pg.Profile(), method))


@pytest.mark.parametrize("method", ["activate", "infer", "deactivate"])
def test_fake_runner_methods_match(method):
    assert parameters(getattr(FakeTrtRunner, method)) == parameters(getattr(pg.TrtRunner, method))


def test_create_config_passes_on_the_real_common_options():
    # CreateConfig's **kwargs go to _CreateConfigCommon; the fake refuses whatever that would refuse.
    common = next(cls for cls in pg.CreateConfig.__mro__[1:] if "__init__" in vars(cls))
    real = [name for name in inspect.signature(common.__init__).parameters if name not in ("self", "kwargs")]
    assert list(CONFIG_COMMON_OPTIONS) == real
    with pytest.raises(TypeError, match="timing_cache_path"):
        FakePolygraphy().CreateConfig(fp16=True, timing_cache_path="x")


def test_every_name_the_code_calls_is_faked_and_real():
    # Read off the code that takes them from polygraphy.backend.trt (as `pg.Name`), so a new call is seen.
    root = Path(__file__).resolve().parents[2]
    used = {name for source in ("export/tensorrt/build.py", "runtimes/backends/trt_runner.py")
            for name in re.findall(r"\bpg\.([A-Z]\w*)", (root / source).read_text())}
    assert {"CreateConfig", "EngineBytesFromNetwork", "EngineFromBytes", "TrtRunner"} <= used
    assert used <= set(FAKES) and all(hasattr(pg, name) for name in used), sorted(used - set(FAKES))
    assert set(vars(fake_runner_backend().pg)) == {"EngineFromBytes", "TrtRunner"}
