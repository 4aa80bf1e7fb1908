"""The runner: closed-loop equivalence with `vantage eval`, video and UDP, lean imports, bad input."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from agents.evaluation import evaluate_target
from common.errors import InvalidArgumentError
from deploy.bundle import BundleError, load_bundle
from deploy.io import SinkError, SourceError, open_sink, parse_source
from deploy.policy import FrameError
from deploy.runner import open_deployment, run_sim, run_stream

RECEIVED: list[dict[str, Any]] = []


def collect(record: dict[str, Any]) -> None:
    """A ``module:function`` sink for the tests."""
    RECEIVED.append(record)


def _video(path: Path, frames: int = 6, size: tuple[int, int] = (80, 60)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize("name", ["tracking_ppo", "tracking_rainbow"])
def test_sim_closed_loop_reproduces_vantage_eval(runs: dict[str, Path], bundles: dict[str, Path], name: str) -> None:
    result, _, _ = evaluate_target(runs[name], episodes=2, seed=3, max_steps=25, out="eval")
    deployed = run_sim(open_deployment(bundles[name]), "vantage/ActiveTracking-v0", episodes=2, seed=3, max_steps=25)
    assert deployed["per_episode"] == [e.record() for e in result.episodes]
    assert deployed["distance_error_mean"] == result.summary["distance_error_mean"]
    assert {"preprocess", "policy", "decode", "simulator"} <= set(deployed["latency"]["stages"])


def test_face_closed_loop_runs_the_bundle_perception_and_samples_reproducibly(bundles: dict[str, Path]) -> None:
    runs_ = [run_sim(open_deployment(bundles["face_ppo"]), "vantage/DroneFaceRecognition-v0", episodes=2, seed=0,
                     max_steps=30) for _ in range(2)]
    assert runs_[0]["per_episode"] == runs_[1]["per_episode"]
    assert runs_[0]["settings"]["actions"] == "sampled"
    recognitions = sum(e["recognition_calls"] for e in runs_[0]["per_episode"])
    detector = runs_[0]["latency"]["stages"].get("perception:detector", {"calls": 0})
    assert detector["calls"] == recognitions  # every recognition ran the bundle's detector
    greedy = run_sim(open_deployment(bundles["face_ppo"], actions="argmax"), "vantage/DroneFaceRecognition-v0",
                     episodes=1, seed=0, max_steps=5)
    assert greedy["settings"]["actions"] == "most likely"


def test_video_source_sends_each_decision(bundles: dict[str, Path], tmp_path: Path) -> None:
    RECEIVED.clear()
    video = _video(tmp_path / "walk.avi")
    summary = run_stream(open_deployment(bundles["face_ppo"]), parse_source(f"video:{video}"),
                         open_sink("tests.deploy.test_runner:collect"))
    assert summary["frames"] == 6 and summary["rejected_frames"] == 0 and summary["stopped"] == "end of stream"
    assert [r["frame"] for r in RECEIVED] == [1, 2, 3, 4, 5, 6]
    for record in RECEIVED:
        assert record["name"] in ("recognize", "forward", "backward", "arc_left", "arc_right")
        assert ("faces" in record) == (record["name"] == "recognize")
    assert summary["latency"]["fps"] > 0 and summary["latency"]["stages"]["capture"]["calls"] == 7


def test_frames_of_another_size_are_resized_or_rejected(bundles: dict[str, Path], tmp_path: Path) -> None:
    video = _video(tmp_path / "clip.avi", frames=3)
    summary = run_stream(open_deployment(bundles["tracking_ppo"], on_mismatch="reject"),
                         parse_source(f"video:{video}"), open_sink("none"))
    assert summary["frames"] == 0 and summary["rejected_frames"] == 3
    deployment = open_deployment(bundles["tracking_ppo"])
    with pytest.raises(FrameError, match="4 channels; input 'obs' takes 3"):
        deployment.policy.act(np.zeros((48, 48, 4), np.uint8))
    with pytest.raises(FrameError, match="not an image"):
        deployment.policy.act(np.zeros((48, 48), np.uint8))
    assert deployment.policy.act(np.zeros((100, 70, 3), np.uint8)).index is not None  # resized


def test_udp_sink_to_a_loopback_port(bundles: dict[str, Path], tmp_path: Path) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    port = receiver.getsockname()[1]
    video = _video(tmp_path / "clip.avi", frames=4)
    summary = run_stream(open_deployment(bundles["tracking_ppo"]), parse_source(f"video:{video}"),
                         open_sink(f"udp:127.0.0.1:{port}"))
    records = [json.loads(receiver.recv(65536)) for _ in range(summary["frames"])]
    receiver.close()
    assert [r["frame"] for r in records] == [1, 2, 3, 4]
    assert all(0 <= r["action"] < 25 and len(r["value"]) == 2 for r in records)


def test_the_runner_imports_no_training_stack_for_video(bundles: dict[str, Path], tmp_path: Path) -> None:
    video = _video(tmp_path / "clip.avi", frames=3)
    code = (
        "import sys\n"
        "from deploy.cli import main\n"
        f"code = main([{str(bundles['face_ppo'])!r}, '--source', 'video:{video}', '--sink', 'none', '--json'])\n"
        "heavy = sorted(m for m in ('torch', 'stable_baselines3', 'mujoco', 'gymnasium', 'perception', 'envs') "
        "if m in sys.modules)\n"
        "print('HEAVY', heavy, code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY [] 0" in out.stdout, out.stdout + out.stderr
    summary = json.loads(out.stdout[:out.stdout.rindex("HEAVY")])
    assert summary["frames"] == 3


def test_bad_sources_and_sinks_are_named(bundles: dict[str, Path], tmp_path: Path) -> None:
    deployment = open_deployment(bundles["tracking_ppo"])
    with pytest.raises(InvalidArgumentError, match="'rtsp' is not a source; allowed: sim:ENV_ID, video:PATH"):
        parse_source("rtsp")
    with pytest.raises(SourceError, match="no such file"):
        run_stream(deployment, parse_source(f"video:{tmp_path / 'missing.mp4'}"), open_sink("none"))
    (tmp_path / "not_a_video.mp4").write_text("hello")
    with pytest.raises(SourceError, match=r"cannot open --source video:.*a video file"):
        run_stream(deployment, parse_source(f"video:{tmp_path / 'not_a_video.mp4'}"), open_sink("none"))
    with pytest.raises(SinkError, match=r"cannot reach no-such-host.invalid"):
        open_sink("udp:no-such-host.invalid:9000")
    with pytest.raises(SinkError, match="port in 1-65535"):
        open_sink("udp:127.0.0.1:port")
    with pytest.raises(SinkError, match="cannot import send from module no_such_module"):
        open_sink("no_such_module:send")
    with pytest.raises(InvalidArgumentError, match="allowed: stdout, none, udp:HOST:PORT, module:function"):
        open_sink("file.json")
    with pytest.raises(InvalidArgumentError, match=r"bundle .* is an agent of vantage/ActiveTracking-v0"):
        run_sim(deployment, "vantage/DroneFaceRecognition-v0", episodes=1)
    with pytest.raises(InvalidArgumentError, match="argmax only"):
        open_deployment(bundles["tracking_rainbow"], actions="sample")


def test_altered_missing_and_foreign_bundles_are_refused(bundles: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(bundles["tracking_ppo"], copy)
    data = bytearray((copy / "policy.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "policy.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"policy.onnx does not match its sha256"):
        open_deployment(copy)
    (copy / "policy.onnx").unlink()
    with pytest.raises(BundleError, match=r"incomplete: policy.onnx is missing"):
        load_bundle(copy)
    shutil.rmtree(copy)
    shutil.copytree(bundles["tracking_ppo"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(BundleError, match="schema version 99; this runner reads version 1"):
        load_bundle(copy)
    with pytest.raises(BundleError, match="not a deployment bundle"):
        load_bundle(tmp_path)
    with pytest.raises(InvalidArgumentError, match="has no fp16 models"):
        open_deployment(bundles["tracking_ppo"], precision="fp16")


def stop_on_second(record: dict[str, Any]) -> None:
    """A sink whose user presses Ctrl-C while the second frame is sent."""
    if record["frame"] == 2:
        raise KeyboardInterrupt


def test_ctrl_c_stops_gracefully_with_the_summary(bundles: dict[str, Path], tmp_path: Path) -> None:
    video = _video(tmp_path / "clip.avi", frames=5)
    summary = run_stream(open_deployment(bundles["tracking_ppo"]), parse_source(f"video:{video}"),
                         open_sink("tests.deploy.test_runner:stop_on_second"))
    assert summary["stopped"] == "interrupted (Ctrl-C)" and summary["frames"] == 1
    assert summary["latency"]["stages"]["policy"]["calls"] == 2


def test_face_chain_answers_as_the_framework_pipeline(bundles: dict[str, Path]) -> None:
    import gymnasium as gym

    import envs  # noqa: F401
    from perception.faces.pipeline import FacePipeline

    env = gym.make("vantage/DroneFaceRecognition-v0", action_set="paper")
    frames = []
    for seed, distance in ((0, 1.0), (1, 1.5), (2, 2.5)):
        env.reset(seed=seed, options={"start": {"distance": distance, "angle_deg": 0.0}})
        frames.append(env.unwrapped.sim.render(env.unwrapped.rec_camera))
    env.close()
    bundle = load_bundle(bundles["face_ppo"])
    reference = FacePipeline.load(*(m["source"] for m in bundle.perception["models"]), runtime="onnxruntime")
    chain = open_deployment(bundle.root).chain
    found = 0
    for frame in frames:
        ours, theirs = chain(frame), reference(frame)
        assert [f.identity for f in ours] == [f.identity for f in theirs]
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            assert abs(a.confidence - b.confidence) < 1e-4 and abs(a.similarity - b.similarity) < 1e-4
        found += len(ours)
    assert found >= 2  # frontal faces at 1-2.5 m are found
