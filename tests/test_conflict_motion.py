"""The learned conflict model (conflict-v4): its weights are the checksummed ones, its numpy forward is the
trained network, it runs on real clips through the runtime's observer, and v3 scores exactly as before."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.weights import sha256_of
from vision.conflict import ConflictModel, window_features
from vision.conflict.model import motion_input
from vision.conflict.observe import MOTION_CHANNELS, MOTION_IMAGE_HW, FlowField, motion_image

ROOT = Path(__file__).resolve().parents[1]
V3 = ROOT / "models" / "conflict" / "conflict-v3.json"
V4 = ROOT / "models" / "conflict" / "conflict-v4.json"


def test_v4_loads_with_verified_weights(tmp_path):
    model = ConflictModel.load(V4)
    spec = model.params["net"]
    assert model.kind == "motion" and sha256_of(V4.parent / spec["file"]) == spec["sha256"]
    assert model.net.n_params == spec["n_params"] and 10_000 <= model.net.n_params <= 100_000
    # a changed weights file is refused, not silently used
    shutil.copy(V4, tmp_path / V4.name)
    w = dict(np.load(V4.parent / spec["file"]))
    w["m0.head.bias"] = w["m0.head.bias"] + 1.0
    np.savez(tmp_path / spec["file"], **w)
    with pytest.raises(ValueError, match="checksum"):
        ConflictModel.load(tmp_path / V4.name)


def test_numpy_forward_is_the_trained_torch_network():
    import torch

    from models.conflict.train_motion import batch_tensors, decode, torch_net

    model = ConflictModel.load(V4)
    nets = []
    for member in model.net.members:
        net = torch_net()
        net.load_state_dict({k: torch.from_numpy(v) for k, v in member.items()})
        nets.append(net.eval())
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (7, len(MOTION_CHANNELS), *MOTION_IMAGE_HW), dtype=np.uint8)

    class Unit:  # one window over all 7 frames
        windows, mask = np.arange(7)[None], np.ones((1, 7), bool)

    Unit.frames = frames
    with torch.no_grad():
        expected = float(np.mean([float(n(*batch_tensors([Unit], [False]))[0]) for n in nets]))
    assert np.allclose(decode(frames), _inputs(frames))
    assert model.net.decision(_inputs(frames)) == pytest.approx(expected, abs=1e-4)
    # numpy alone (a runtime without torch) computes the same embeddings as the torch convolutions
    x = _inputs(frames)
    assert np.allclose(model.net.embed(x, use_torch=False), model.net.embed(x, use_torch=True), atol=1e-4)
    # the runtime path: frames embedded once and remembered across the windows they are in
    obs = _observations(frames)
    first = model.net.decision_window(obs)
    assert first == pytest.approx(expected, abs=1e-4) and model.net.decision_window(obs) == first
    assert model.net.decision_window(obs[2:]) == pytest.approx(model.net.decision(_inputs(frames[2:])), abs=1e-5)


class _Ob:
    def __init__(self, img: np.ndarray):
        self.motion_image = img


def _observations(frames: np.ndarray) -> list:
    return [_Ob(f) for f in frames]


def _inputs(frames: np.ndarray) -> np.ndarray:
    return motion_input(_observations(frames))


def test_v3_scores_windows_exactly_as_before():
    from tests.test_conflict import fake_clip

    model = ConflictModel.load(V3)
    obs = fake_clip(14, jitter=20.0)
    for k in range(2, len(obs)):
        w = obs[max(0, k - 7):k + 1]
        assert model.score_window(w) == float(model.proba(window_features(w))[0])


def test_motion_image_masks_and_encodes_directions():
    h, w = 90, 160
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = 9.0  # everything moves right, 9 px of 90 per 0.2 s: 0.5 frame heights per second
    field = FlowField(flow, np.linalg.norm(flow, axis=2) / h / 0.2, 1.0, 0.2, np.full((h, w), 40, np.uint8))
    mask = np.zeros((h, w), bool)
    mask[:, : w // 2] = True
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, [5, 7, 9], :] = [[20, 20, 0.9], [30, 40, 0.9], [40, 60, 0.9]]  # a left arm, inside the mask
    img = motion_image(field, (w, h), kp, np.ones(1, bool), mask)
    assert img.shape == (len(MOTION_CHANNELS), *MOTION_IMAGE_HW) and img.dtype == np.uint8
    left, right = img[:, :, :10], img[:, :, -10:]
    assert (right[0] == 0).all() and (right[1:3] == 128).all() and (right[3:] == 0).all()  # outside the zone
    assert (left[0] > 80).all() and (left[1] > 128 + 40).all() and (left[2] == 128).all() and (left[3] > 0).all()
    assert img[4].max() == 255  # the skeleton is drawn
    x = _inputs(img[None])
    assert x[0, 1, :, :10].min() > 0.3 and abs(x[0, 2]).max() == 0.0  # rightwards, no vertical motion


@pytest.mark.slow
def test_runs_on_real_clips_and_scores_fights_above_calm(shared_data):
    """The runtime's detector, pose and observer on a handful of real clips: v4 scores the fights above the calm
    scenes on average (a smoke test of the whole path, on clips the shipped model was trained on: not an accuracy
    figure), and v3 still scores every window as before."""
    from models.conflict.train_motion import Pipeline, phased_frames, window_spans

    fights = [shared_data / "fight-dev" / "fight" / f"fi{n:03d}.mp4" for n in (5, 31, 90)]
    calm = [shared_data / "fight-dev" / "noFight" / f"nofi{n:03d}.mp4" for n in (62, 75, 90)]
    pipeline = Pipeline()
    v3, v4 = ConflictModel.load(V3), ConflictModel.load(V4)
    peak = {}
    for path in fights + calm:
        obs = pipeline.observe(path)
        assert len(obs) == len(list(phased_frames(path)))
        assert all(o.motion_image.shape == (len(MOTION_CHANNELS), *MOTION_IMAGE_HW) for o in obs)
        scores = []
        for a, b in window_spans(obs, v4.window_s):
            w = obs[a:b + 1]
            scores.append(v4.score_window(w))
            assert v3.score_window(w) == float(v3.proba(window_features(w))[0])
        assert scores and all(0.0 <= s <= 1.0 for s in scores)
        peak[path.stem] = max(scores)
    assert np.mean([peak[p.stem] for p in fights]) > np.mean([peak[p.stem] for p in calm]) + 0.2, peak


def test_cv_results_are_recorded_with_the_model():
    meta = json.loads(V4.read_text())["meta"]
    assert {"accuracy", "precision", "recall"} <= set(meta["cv"])
    assert {"accuracy", "precision", "recall"} <= set(meta["cv_v3_recipe_same_folds"])
    assert "source" in meta["cv_grouping"]
