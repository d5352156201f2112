"""TensorRT engine builds: every exported model builds with a real NVIDIA parser + builder (TensorRT-RTX
needs no GPU), the engine cache reuses and refuses engines correctly, and the runtime finds what was built."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from perception.deploy.engine import build_engine
from perception.runtime.tensorrt_engine import (
    EngineConfig,
    EngineError,
    EnginePaths,
    check_engine,
    import_tensorrt,
    locate_engine,
)


def _have_builder() -> bool:
    try:
        import_tensorrt(allow_rtx=True)
        return True
    except EngineError:
        return False


needs_builder = pytest.mark.skipif(not _have_builder(), reason="neither tensorrt nor tensorrt-rtx is installed")


@needs_builder
@pytest.mark.parametrize("name", ["stan_s_temporal", "stan_s", "stan_s_noattn", "stan_lite0_temporal"])
def test_every_exported_model_builds(name: str, model_onnx: Callable[[str], Path], tmp_path: Path) -> None:
    phases: list[str] = []
    r = build_engine(model_onnx(name), EngineConfig(precision="fp32", cache_dir=str(tmp_path)),
                     progress=phases.append)
    assert r.built and r.paths.engine.stat().st_size > 1_000_000
    assert any("parsing" in p for p in phases) and any("engine written" in p for p in phases)
    stored = json.loads(r.paths.sidecar.read_text())
    assert stored["key"]["onnx_sha256"] == r.key.onnx_sha256 and stored["model_info"]["name"] == name
    assert stored["key"]["profiles"][0][0] == "image" and stored["key"]["profiles"][0][3][0] == 4  # batch 1..4


@needs_builder
@pytest.mark.parametrize("name", ["stan_s_temporal", "stan_lite0_temporal"])
def test_int8_qdq_model_builds(name: str, int8_onnx: Callable[[str], Path], tmp_path: Path) -> None:
    r = build_engine(int8_onnx(name), EngineConfig(precision="int8", cache_dir=str(tmp_path)))
    assert r.built and r.key.precision == "int8"


@needs_builder
def test_engine_cache_reuses_rebuilds_and_refuses(shipped_onnx: Callable[[str], Path], tmp_path: Path) -> None:
    import onnx

    onnx_path = shipped_onnx("stan_s")
    cfg = EngineConfig(precision="fp32", cache_dir=str(tmp_path / "cache"))
    first = build_engine(onnx_path, cfg)
    again = build_engine(onnx_path, cfg)
    assert first.built and not again.built and again.paths == first.paths  # built once, then reused

    # a changed ONNX file (here: one more metadata entry) has another hash -> another engine
    changed = tmp_path / "stan_s.onnx"
    model = onnx.load(str(onnx_path))
    entry = model.metadata_props.add()
    entry.key, entry.value = "note", "re-exported"
    onnx.save(model, str(changed))
    other = build_engine(changed, cfg)
    assert other.built and other.paths.engine != first.paths.engine

    # a different batch profile is a different engine too
    assert build_engine(onnx_path, EngineConfig(precision="fp32", cache_dir=cfg.cache_dir, max_batch=2)).built

    # an engine whose sidecar says another TensorRT built it is refused, naming the field
    sidecar = json.loads(first.paths.sidecar.read_text())
    sidecar["key"]["trt_version"] = "9.0.0"
    first.paths.sidecar.write_text(json.dumps(sidecar))
    with pytest.raises(EngineError, match=r"stale.*trt_version.*9\.0\.0"):
        build_engine(onnx_path, cfg)
    with pytest.raises(EngineError, match="stale"):
        check_engine(first.paths, again.key)
    first.paths.sidecar.write_text("{not json")
    with pytest.raises(EngineError, match="unreadable"):
        build_engine(onnx_path, cfg)
    rebuilt = build_engine(onnx_path, cfg, force=True)  # --force replaces it
    assert rebuilt.built and check_engine(rebuilt.paths, rebuilt.key).name == "stan_s"


@needs_builder
def test_build_errors_are_clear(shipped_onnx: Callable[[str], Path], tmp_path: Path) -> None:
    onnx_path = shipped_onnx("stan_s")
    with pytest.raises(EngineError, match="QDQ"):
        build_engine(onnx_path, EngineConfig(precision="int8", cache_dir=str(tmp_path)))
    with pytest.raises(EngineError, match="exceeds the batch range"):
        build_engine(onnx_path, EngineConfig(precision="fp32", max_batch=16, cache_dir=str(tmp_path)))
    if import_tensorrt()[1] == "tensorrt_rtx":
        with pytest.raises(EngineError, match="strongly typed"):
            build_engine(onnx_path, EngineConfig(precision="fp16", cache_dir=str(tmp_path)))
    with pytest.raises(EngineError, match="does not exist"):
        check_engine(EnginePaths.for_engine(tmp_path / "none.engine"), build_engine(
            onnx_path, EngineConfig(precision="fp32", cache_dir=str(tmp_path))).key)


@needs_builder
def test_build_engine_cli_prebuilds_and_reuses(shipped_onnx: Callable[[str], Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from perception.cli import main

    args = ["build-engine", "--onnx", str(shipped_onnx("stan_s")), "--precision", "fp32",
            "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "deploy" / "stan_s.engine")]
    assert main(args) == 0
    assert "building fp32 engine" in capsys.readouterr().out
    assert (tmp_path / "deploy" / "stan_s.engine").is_file() and (tmp_path / "deploy" / "stan_s.json").is_file()
    assert main(args) == 0
    assert "reused the cached engine" in capsys.readouterr().out
    assert main(["build-engine", "--onnx", str(tmp_path / "missing.onnx"), "--cache-dir", str(tmp_path)]) == 1


@needs_builder
def test_the_runtime_finds_the_engine_deploy_built(shipped_onnx: Callable[[str], Path], tmp_path: Path) -> None:
    """The builder writes where the runtime's cache lookup looks, with a sidecar the runtime accepts."""
    onnx_path = shipped_onnx("stan_s")
    cfg = EngineConfig(precision="fp32", cache_dir=str(tmp_path))
    trt, flavour = import_tensorrt()
    entry = locate_engine(onnx_path, cfg, trt, flavour)
    assert not entry.paths.engine.exists()
    built = build_engine(onnx_path, cfg)
    assert entry.paths == built.paths and entry.key == built.key
    assert check_engine(entry.paths, entry.key) == entry.info
