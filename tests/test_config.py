"""The config model: a good file passes; each kind of mistake is named with its field path."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gridwatch.config import ConfigError, load_config, mask_url

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gridwatch.yaml"


def write(tmp_path, data) -> Path:
    p = tmp_path / "gw.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def problems(tmp_path, data) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    return {p.where: p.msg for p in info.value.problems}


def test_example_is_valid():
    cfg = load_config(EXAMPLE)
    assert [c.id for c in cfg.cameras] == ["cam-0001", "cam-0002"]
    zone = cfg.cameras[0].zones[0]
    assert zone.crowding.threshold == 25 and zone.crowding.clear_below == 20 and zone.conflict.enabled
    assert cfg.cameras[1].zones[0].crowding.effective_clear_below == 14  # default: one below the threshold
    assert cfg.cameras[1].zones[0].crowding.clear_below is None  # derived values stay out of the user's fields


@pytest.mark.parametrize("mutate, field, words", [
    (lambda d: d["cameras"][1]["zones"][0].update(polygon=[[0, 0], [1, 1]]), "cameras[1].zones[0].polygon", "at least 3"),
    (lambda d: d["cameras"][0]["zones"][0].update(polygon=[[0, 0], [1.5, 0], [1, 1]]),
     "cameras[0].zones[0].polygon[1][0]", "less than or equal to 1"),
    (lambda d: d["cameras"][0]["zones"][0].update(polygon=[[0, 0], [1, 1], [1, 0], [0, 1]]),
     "cameras[0].zones[0].polygon", "cross"),
    (lambda d: d["cameras"][0]["zones"][0].update(polygon=[[0, 0], [0.5, 0.5], [1, 1]]),
     "cameras[0].zones[0].polygon", "no area"),
    (lambda d: d["cameras"][0].pop("url"), "cameras[0].url", "required"),
    (lambda d: d["cameras"][0].update(url="http://cam/x"), "cameras[0].url", "unsupported scheme"),
    (lambda d: d["cameras"][0].update(fps=0), "cameras[0].fps", "greater than 0"),
    (lambda d: d["cameras"][0].update(lat=123), "cameras[0].lat", "less than or equal to 90"),
    (lambda d: d["cameras"][0].update(colour="red"), "cameras[0].colour", "unknown field"),
    (lambda d: d["cameras"][0]["zones"][0]["crowding"].update(clear_below=30), "cameras[0].zones[0].crowding",
     "must be below threshold"),
    (lambda d: d["cameras"][0]["zones"][0]["crowding"].update(threshold=0), "cameras[0].zones[0].crowding.threshold",
     "greater than or equal to 1"),
    (lambda d: d["cameras"][1].update(id="cam-0001"), "cameras[1].id", "already used by cameras[0]"),
    (lambda d: d["cameras"][1].update(grid="g-99"), "cameras[1].grid", "'g-99' is not a grid"),
    (lambda d: d["grids"][1].update(parent="nowhere"), "grids[1].parent", "'nowhere' is not a grid"),
    (lambda d: d["cameras"][0]["zones"].append(dict(d["cameras"][0]["zones"][0])), "cameras[0]", "appears twice"),
])
def test_each_mistake_names_its_field(tmp_path, mutate, field, words):
    data = example()
    mutate(data)
    found = problems(tmp_path, data)
    assert field in found, found
    assert words in found[field]


def test_yaml_syntax_error_gives_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("grids:\n  - id: a\n cameras: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert "line" in str(info.value) and str(p) in str(info.value)


def test_mask_url_hides_passwords():
    assert mask_url("rtsp://admin:hunter2@10.0.0.1/x and rtsp://u:p%40ss@h/y") == \
        "rtsp://admin:***@10.0.0.1/x and rtsp://u:***@h/y"
    assert mask_url("rtsp://host/x") == "rtsp://host/x"


def test_cli_check_exit_codes_and_no_password(tmp_path):
    gw = shutil.which("gridwatch") or str(Path(sys.executable).with_name("gridwatch"))
    ok = subprocess.run([gw, "config", "check", str(EXAMPLE)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "secret" not in ok.stdout + ok.stderr
    data = example()
    data["cameras"][0]["url"] = "ftp://viewer:secret@192.0.2.10/x"
    data["cameras"][1]["zones"][0]["polygon"] = [[0, 0]]
    bad = subprocess.run([gw, "config", "check", str(write(tmp_path, data))], capture_output=True, text=True)
    assert bad.returncode != 0
    assert str(tmp_path / "gw.yaml") in bad.stderr
    assert "cameras[0].url" in bad.stderr and "cameras[1].zones[0].polygon" in bad.stderr
    assert "secret" not in bad.stdout + bad.stderr and "viewer:***@" in bad.stderr


def test_a_count_calibration_must_match_the_detector(tmp_path):
    """The shipped Mall calibration counts yolov10n@960 boxes above 0.15; fed the default 640/0.25 it would count wrong."""
    mall = Path(__file__).resolve().parents[1] / "models" / "counting" / "mall.json"
    data = example()
    data["cameras"][0]["zones"][0]["count_calibration"] = str(mall)
    found = problems(tmp_path, data)
    msg = found["cameras[0].zones[0].count_calibration"]
    assert "imgsz 960" in msg and "confidence 0.15" in msg and "--imgsz 640 --confidence 0.25" in msg
    data["detector"] = {"imgsz": 960, "confidence": 0.15}
    cfg = load_config(write(tmp_path, data))
    assert cfg.cameras[0].zones[0].count_calibration == mall
    data["cameras"][0]["perspective_check"] = False  # fitted with the check on: the counts would differ
    assert "perspective_check" in problems(tmp_path, data)["cameras[0].zones[0].count_calibration"]
    data["cameras"][0]["perspective_check"] = True
    data["cameras"][0]["zones"][0]["count_calibration"] = str(tmp_path / "missing.json")
    assert "cannot use" in problems(tmp_path, data)["cameras[0].zones[0].count_calibration"]


def test_conflict_needs_the_rate_its_classifier_was_trained_at(tmp_path):
    data = example()
    cam = data["cameras"][0]
    assert any(z.get("conflict", {}).get("enabled") for z in cam["zones"])
    cam["fps"] = 2
    found = problems(tmp_path, data)
    msg = next(m for loc, m in found.items() if loc.startswith("cameras[0]"))
    assert "fps 2 is too low for the conflict rule" in msg and "fps: 5" in msg


def test_a_broken_calibration_file_is_a_clear_problem_not_a_crash(tmp_path):
    data = example()
    for text in ("[1, 2]", '{"detector": {"confidence": null}}', "not json"):
        (tmp_path / "cal.json").write_text(text)
        data["cameras"][0]["zones"][0]["count_calibration"] = str(tmp_path / "cal.json")
        assert "cannot use" in problems(tmp_path, data)["cameras[0].zones[0].count_calibration"]
    data["cameras"][0]["zones"][0]["count_calibration"] = "/dev/zero"  # never finishes reading: refused unread
    assert "not a calibration file" in problems(tmp_path, data)["cameras[0].zones[0].count_calibration"]
