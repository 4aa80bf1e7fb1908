"""`vantage export`, `vantage deploy` (sim, video, build) and `vantage bench deploy` from the command line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from scripts.cli import main


def test_export_and_deploy_in_sim_from_the_cli(runs: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    bundle = tmp_path / "bundle"
    done = runner.invoke(main, ["export", str(runs["tracking_ppo"]), "--out", str(bundle), "--samples", "16",
                                "--calibration-samples", "8", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["parity"]["fp32"]["policy"]["argmax_agreement"] == 1.0
    again = runner.invoke(main, ["export", str(runs["tracking_ppo"]), "--out", str(bundle), "--samples", "16"])
    assert again.exit_code == 1 and "pass --overwrite" in again.output
    summary = tmp_path / "sim.json"
    ran = runner.invoke(main, ["deploy", str(bundle), "--source", "sim:vantage/ActiveTracking-v0", "--episodes", "1",
                               "--max-steps", "5", "--seed", "2", "--json", "--summary", str(summary)])
    assert ran.exit_code == 0, ran.output
    result = json.loads(ran.stdout)
    assert result["episodes"] == 1 and result["per_episode"][0]["steps"] == 5
    assert json.loads(summary.read_text())["per_episode"] == result["per_episode"]
    refused = runner.invoke(main, ["deploy", str(bundle), "--source", "sim:vantage/ActiveTracking-v0",
                                   "--episodes", "1", "--max-steps", "2", "--summary", str(summary)])
    assert refused.exit_code == 1 and "exists; pass --overwrite" in refused.output
    bad = runner.invoke(main, ["deploy", str(bundle), "--source", "sim:vantage/ActiveTracking-v0", "--actions", "x"])
    assert bad.exit_code == 2 and "'x' is not one of 'argmax', 'sample'" in bad.output
    bench = runner.invoke(main, ["bench", "deploy", str(bundle), "--iterations", "20", "--json"])
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.stdout)[0]["policy"]["fp32"]["inferences_per_s"] > 0


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_deploy_build_without_tensorrt_says_so(bundles: dict[str, Path]) -> None:
    done = CliRunner().invoke(main, ["deploy", "build", str(bundles["face_ppo"])])
    assert done.exit_code == 1
    assert "TensorRT is not installed here" in done.output
    # The trtexec commands come first, so a user can build on the Jetson itself.
    assert "trtexec --onnx=policy.onnx --saveEngine=engines/<device>/policy.fp32.engine" in done.output
    assert "--minShapes=input:1x3x240x320" in done.output


def _gpu_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (no GPU on this machine)"
    try:
        from deploy.inference import import_tensorrt

        import_tensorrt()
        from deploy.tensorrt import device_key

        device_key()
    except Exception as exc:  # no CUDA device, or no cuda-python
        return f"TensorRT cannot run here: {exc}"
    return None


@pytest.mark.skipif(_gpu_reason() is not None, reason=str(_gpu_reason()))
def test_tensorrt_engines_match_onnx_runtime(bundles: dict[str, Path]) -> None:  # pragma: no cover - GPU only
    import numpy as np

    from deploy.bundle import load_bundle
    from deploy.runner import open_deployment
    from deploy.tensorrt import build_engines

    build_engines(load_bundle(bundles["tracking_ppo"]), "fp32", overwrite=True)
    frame = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    ort = open_deployment(bundles["tracking_ppo"]).policy.act(frame)
    trt = open_deployment(bundles["tracking_ppo"], backend="tensorrt").policy.act(frame)
    assert ort.index == trt.index
