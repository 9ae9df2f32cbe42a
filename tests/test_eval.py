"""The evaluation harness: matching rules, and bench/eval.py detect on real PETS footage."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import eval as E

ROOT = Path(__file__).resolve().parents[1]


def test_matching_is_one_to_one_at_iou_half():
    gt = np.array([[0, 0, 10, 20], [30, 0, 40, 20]], np.float32)
    pred = np.array([[0, 0, 10, 20], [1, 0, 11, 20], [30, 5, 40, 25], [100, 100, 110, 120]], np.float32)
    conf = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # the duplicate of person 1 is a false positive; [30,5,40,25] overlaps person 2 with IoU 15/25 = 0.6
    assert E.match_counts(pred, conf, gt) == (2, 4, 2)
    assert E.match_counts(pred[:0], conf[:0], gt) == (0, 0, 2)
    assert E.match_counts(pred, conf, gt[:0]) == (0, 4, 0)


def test_setup_names_parse_back():
    s = E.DetectSetup.parse("yolov10n.pt@960+tiles2")
    assert (s.model, s.imgsz, s.tiles, s.name) == ("yolov10n.pt", 960, 2, "yolov10n@960+tiles2x2")


def _run_eval(*args) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "eval.py"), *map(str, args)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # the last line is the result


@pytest.mark.slow
def test_eval_detect_on_pets(shared_data, tmp_path):
    r = _run_eval("detect", "--data", shared_data / "pets-s2l1", "--every", "40", "--setups", "yolov10n.pt@640",
                  "--results", tmp_path)
    assert r["recall"] > 0.8 and r["precision"] > 0.75  # plain yolov10n@640 scores about 0.92 / 0.87 here
    assert {row["setup"] for row in r["table"]} >= {"yolov10n@640"}


@pytest.mark.slow
def test_eval_count_on_an_unseen_folder_of_the_mall_layout(shared_data, tmp_path):
    """Other frame names, no heads.json or perspective map: the shipped calibration runs on it unchanged."""
    import shutil

    src = shared_data / "mall-train"
    rows = (src / "counts.csv").read_text().splitlines()[1:][::80]  # 10 frames across the sequence
    (tmp_path / "frames").mkdir()
    lines = ["frame,count"]
    for i, row in enumerate(rows):
        name, count = row.split(",")
        shutil.copy(src / "frames" / name, tmp_path / "frames" / f"cam7_{i:04d}.jpg")
        lines.append(f"cam7_{i:04d}.jpg,{count}")
    (tmp_path / "counts.csv").write_text("\n".join(lines) + "\n")
    shutil.copy(src / "roi_mask.png", tmp_path / "roi_mask.png")
    r = _run_eval("count", "--data", tmp_path, "--results", tmp_path / "results")
    assert r["frames"] == 10 and np.isfinite(r["mae"]) and r["rmse"] >= r["mae"]
    assert r["mae"] < r["uncalibrated_mae"]  # the calibration helps here as on all 800 frames (2.3 against 8)


@pytest.mark.slow
def test_eval_fight_on_an_unseen_folder_of_the_fight_layout(shared_data, tmp_path):
    """Four clips under other numbers: the shipped model scores them, and a two-fold grouped CV runs on them."""
    import shutil

    src = shared_data / "fight-dev"
    for sub, prefix in (("fight", "fi"), ("noFight", "nofi")):
        (tmp_path / sub).mkdir()
        for k, clip in zip((901, 915), sorted((src / sub).glob("*.mp4"))[:2]):
            shutil.copy(clip, tmp_path / sub / f"{prefix}{k}.mp4")
    r = _run_eval("fight", "--data", tmp_path, "--results", tmp_path / "results")
    assert r["clips"] == 4 and {"accuracy", "precision", "recall", "f1"} <= r.keys()
    assert r["tp"] + r["fn"] == 2 and r["fp"] + r["tn"] == 2
    cv = _run_eval("fight", "--cv", "--data", tmp_path, "--results", tmp_path / "results")
    assert cv["folds"] == 2 and cv["tp"] + cv["fn"] + cv["fp"] + cv["tn"] == 4
