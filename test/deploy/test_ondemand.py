"""On-demand deployment: a bare checkpoint handed to the runtime with the deploy layer's artifact maker is
exported once into the cache and runs on ONNX Runtime; later runs reuse the file."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from perception.deploy.ondemand import OnDemand, on_demand
from perception.runtime.select import ModelSource, RuntimeConfig, backend_chain, build_backend
from perception.weights import weights_path


def test_on_demand_export_is_cached(tmp_path: Path) -> None:
    source = on_demand(ModelSource(checkpoint=weights_path("stan_s_temporal")))
    assert isinstance(source.artifacts, OnDemand)
    assert backend_chain(source, RuntimeConfig(backend="auto")) == ["onnxruntime", "torch"]  # no CUDA here
    cfg = RuntimeConfig(backend="onnxruntime", cache_dir=str(tmp_path), max_batch=2)
    with build_backend(source, cfg) as b:
        assert b.active_name == "onnxruntime" and not b.events
    exported = list((tmp_path / "onnx").glob("stan_s_temporal-*-256x448-b2.onnx"))
    assert len(exported) == 1
    mtime = exported[0].stat().st_mtime_ns
    with build_backend(source, cfg) as b:
        assert b.active_name == "onnxruntime"
    assert exported[0].stat().st_mtime_ns == mtime  # reused, not exported again
    assert not list((tmp_path / "onnx").glob("*.tmp.onnx"))  # written under a temporary name, then renamed
