"""Learning from the room: conflict alerts keep their window, verdicts feed `gridwatch conflict retrain`, versions are
listed, activated and rolled back (registry, admin API, models page).

Real Redis case stores, the real publisher, a real uvicorn app and Chromium; the base data is synthetic (the real
fight-dev run is bench/retrain_site.py)."""
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import WAIT_MS, shot, wait_for

from alerts import Alert, EvidenceStore
from alerts.cases import incident_id_for
from alerts.publisher import AlertPublisher, WindowWriter, read_window
from gridwatch.config import ConfigError, ConflictRule, load_config, parse_config
from gridwatch.config.rules import ConflictPoint
from gridwatch.configsync import ConfigChannel
from gridwatch.learning import BaseData, retrain
from models.conflict import train
from models.conflict.registry import Registry, UnknownVersion, activate, model_for
from vision.conflict import Observation
from vision.conflict.features import FEATURE_NAMES
from vision.conflict.model import DEFAULT_MODEL, ConflictModel
from vision.conflict.monitor import ConflictMonitor
from vision.detections import Detections, Frame, Incident

FPS = 5.0
F = len(FEATURE_NAMES)


# --------------------------------------------------------------------------- capture


def scuffle(n: int, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        xyxy = np.asarray([[100, 100, 150, 250], [140, 100, 190, 250]], np.float32) + rng.normal(0, 8, (2, 4))
        out.append(Observation(k / FPS, 360, xyxy.astype(np.float32), np.zeros((2, 17, 3), np.float32),
                               np.zeros(2, bool), np.full(2, 0.5, np.float32), np.full(2, 0.5, np.float32), 0.01,
                               0.05, 0.4))
    return out


class Scores:
    window_s, sample_fps, threshold, hold_windows, kind, meta = 1.5, FPS, 0.5, 1, "trees", {"version": "stub-1"}

    def __init__(self, scores):
        self.scores = list(scores)

    def score_window(self, window):
        return self.scores.pop(0) if self.scores else 0.0


def test_a_start_carries_the_window_it_was_judged_on():
    point = ConflictPoint(10.0, 0.6, 3, 6, 0.5, 0.5)
    mon = ConflictMonitor("cam", "z", ConflictRule(calibrate=False), Scores([0.9, 0.1, 0.9, 0.8] + [0.1] * 30),
                          pose=None, point=point)
    started = [inc for ob in scuffle(20) if (inc := mon.push(ob)) is not None and inc.phase == "start"]
    assert len(started) == 1
    ev = started[0].evidence
    assert ev["model"] == "stub-1" and (ev["k"], ev["n"], ev["threshold"]) == (3, 6, 0.6)
    assert ev["feature_names"] == list(FEATURE_NAMES)
    full = [w for w in ev["windows"] if w["full"]]
    assert [w["score"] for w in full] == [0.9, 0.1, 0.9, 0.8]  # the windows behind the persistent score
    assert all(len(w["features"]) == F for w in full)
    assert all(w["features"] is None for w in ev["windows"] if not w["full"])
    assert len(ev["windows"]) <= 6
    # Incident equality ignores the evidence
    a = Incident("conflict", "start", "c", "z", 1.0, 2, 0.5, "d", {"a": 1})
    assert a == Incident("conflict", "start", "c", "z", 1.0, 2, 0.5, "d")


CAMERA = {"id": "cam-1", "name": "Yard", "url": "rtsp://192.0.2.1/s", "grid": "g-1", "lat": 31.2, "lon": 121.4,
          "fps": 5, "zones": [{"id": "z1", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "conflict": {"enabled": True}}]}


def config_file(tmp_path: Path, **settings) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump({"grids": [{"id": "g-1"}], "cameras": [CAMERA],
                                    "alerts": {"clip": {"enabled": False}}, "settings": {"data_dir": "data", **settings}}))
    return path


def test_the_publisher_writes_the_window_also_when_spooled(store, redis_url, tmp_path):
    import redis

    from alerts import CaseStore

    cfg = load_config(config_file(tmp_path))
    evidence = EvidenceStore(cfg.alerts.evidence_dir)
    pub = AlertPublisher(cfg, store, evidence)
    img = np.zeros((120, 160, 3), np.uint8)
    ts = time.time()
    window = {"model": "conflict-v3", "k": 3, "n": 6, "threshold": 0.6,
              "windows": [{"score": 0.9, "features": [0.0] * F}]}
    inc = Incident("conflict", "start", "cam-1", "z1", ts, 2, 0.9, "fight", window)
    (case,) = pub.handle(_analysis(img, ts, inc))
    assert pub.windows.flush(5)
    got = read_window(cfg.alerts.evidence_dir, case.incident_id)
    assert got["incident_id"] == case.incident_id and got["windows"] == window["windows"] and got["zone_id"] == "z1"
    pub.close(5)
    # Redis away (nothing listens on port 1): the alert is spooled, the window is written all the same
    away = CaseStore(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2), prefix=store.p)
    pub = AlertPublisher(cfg, away, evidence, spool_dir=tmp_path / "spool-away")
    inc2 = Incident("conflict", "start", "cam-1", "z1", ts + 60, 2, 0.8, "fight", window)
    assert pub.handle(_analysis(img, ts + 60, inc2)) == [] and pub.outbox.spooled == 1
    assert pub.windows.flush(5)
    assert read_window(cfg.alerts.evidence_dir, incident_id_for("cam-1", "z1", "conflict", ts + 60)) is not None
    pub.windows.close()
    pub.outbox.close()


def _analysis(img, ts, inc):
    from vision.analyser import Analysis

    return Analysis(Frame("cam-1", img, ts, 0), Detections(), Detections(), (), (inc,))


# --------------------------------------------------------------------------- registry


def test_versions_scores_activate_and_an_unknown_version_names_the_field(redis_url, tmp_path):
    import redis

    path = config_file(tmp_path)
    cfg = load_config(path)
    reg = Registry.for_config(cfg)
    names = reg.names()
    assert reg.default == DEFAULT_MODEL.stem and reg.default in names and reg.active_name(cfg) == reg.default
    assert reg.get(reg.default).shipped and reg.get(reg.default).scores["base_cv"]["f1"] > 0  # its own meta.cv
    made = reg.add(ConflictModel.load(DEFAULT_MODEL), {"parent": reg.default, "created_ts": time.time(),
                                                       "base_cv": {"f1": 0.7, "recall": 0.6}})
    assert reg.names()[-1] == made.name and (reg.folder / f"{made.name}.scores.json").exists()
    assert reg.load(made.name).meta["version"] == made.name

    client = redis.Redis.from_url(redis_url)
    channel = ConfigChannel(client, f"gwtest-learn-{time.time_ns()}")
    new, version = activate(cfg, made.name, channel=channel, config_path=path, actor="test")
    assert new.settings.conflict_model == made.name and load_config(path).settings.conflict_model == made.name
    assert channel.current().settings.conflict_model == made.name and version == channel.version()
    assert model_for(new).meta["version"] == made.name  # what the pipeline hands its conflict monitors now
    activate(new, reg.default, channel=channel, config_path=path)  # roll back: by name
    assert load_config(path).settings.conflict_model == reg.default
    client.delete(channel.key, f"{channel.key}:version")


    with pytest.raises(UnknownVersion, match="conflict-v3"):
        activate(cfg, "conflict-v99", config_path=path)
    bad = load_config(config_file(tmp_path, conflict_model="conflict-v99"))
    with pytest.raises(ConfigError) as err:
        reg.active(bad)
    assert "settings.conflict_model" in str(err.value) and reg.default in str(err.value)
    with pytest.raises(ConfigError, match="settings.conflict_model"):
        model_for(bad)  # the pipeline's first step: a process does not start on it
    with pytest.raises(ConfigError, match="settings.conflict_model"):
        parse_config({"settings": {"conflict_model": "../etc/passwd"}})
    client.close()


# --------------------------------------------------------------------------- retrain


def synthetic_base(seed: int = 0, clips: int = 40, per_clip: int = 5) -> BaseData:
    """Fights have feature 0 high, calm clips low; feature 1 is quiet everywhere (the site's false alarms have it)."""
    rng = np.random.default_rng(seed)
    y = np.arange(clips) % 2
    X = rng.normal(0, 0.3, (clips * per_clip, F))
    owner = np.repeat(np.arange(clips), per_clip)
    X[:, 0] += 3.0 * y[owner]
    return BaseData(X, owner, np.zeros(len(X), bool), y, np.arange(clips) // 4, "synthetic groups",
                    [f"c{i}" for i in range(clips)])


def shipped_dir(tmp_path: Path, base: BaseData) -> Path:
    """A "shipped" base version trained on the base data alone (the shipped recipe)."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    params = train.fit("trees", base.X, base.y)
    train.make_model("trees", params, 0.5, 1, {"cv": {"f1": 1.0}}).save(folder / "conflict-base.json")
    return folder


def site_window(rng, fight: bool, look_alike: bool, n: int = 6) -> dict:
    rows = rng.normal(0, 0.3, (n, F))
    rows[:, 0] += 3.0  # every alert looked like a fight to the base model
    if not fight and not look_alike:
        rows[:, 1] += 3.0  # ... but the site's false alarms have something of their own
    return {"model": "conflict-base", "k": 3, "n": 6, "threshold": 0.6, "feature_names": list(FEATURE_NAMES),
            "windows": [{"score": 0.9, "vetoed": None, "full": True, "features": r.tolist()} for r in rows]}


def resolved_site(store, evidence_dir: Path, verdicts: list[tuple[str, bool]], seed: int = 0) -> None:
    """Conflict cases through the real store, each resolved with its verdict, and their windows as the publisher
    writes them. ``verdicts``: (verdict, look-alike false alarm) in time order."""
    rng = np.random.default_rng(seed)
    writer = WindowWriter(evidence_dir / "conflict-windows")
    t0 = time.time() - 3600
    for i, (verdict, look_alike) in enumerate(verdicts):
        ts = t0 + 60 * i
        iid = incident_id_for("cam-1", "z1", "conflict", ts)
        _, case = store.ingest(Alert(kind="conflict", camera_id="cam-1", camera_name="Yard", grid_id="g-1",
                                     zone_id="z1", ts=ts, count=2, score=0.9, detail="fight", snapshot=None, lat=31.2,
                                     lon=121.4, incident_id=iid), 0)
        store.transition(case.id, "acknowledge", "op")
        store.transition(case.id, "resolve", "op", verdict=verdict)
        writer.write(iid, {"incident_id": iid, **site_window(rng, verdict == "confirmed", look_alike)})


def test_retrain_promotes_only_when_better_on_both(store, tmp_path):
    base = synthetic_base()
    path = config_file(tmp_path)
    cfg = load_config(path)
    reg = Registry(Path(cfg.settings.data_dir) / "models" / "conflict", shipped_dir(tmp_path, base),
                   tmp_path / "shipped" / "conflict-base.json")
    channel = ConfigChannel(store.r, store.p)
    evidence_dir = cfg.alerts.evidence_dir
    kw = dict(config_path=path, channel=channel, base=base, registry=reg, progress=False, min_verdicts=6)

    # too few verdicts: nothing is made
    resolved_site(store, evidence_dir, [("false_alarm", False), ("confirmed", False)])
    assert retrain(cfg, store, **kw)["status"] == "not enough verdicts"

    # the site's own false alarms (with a cue of their own), and its fights: better on the held-back verdicts, the
    # base CV unchanged -> promoted, published, saved
    resolved_site(store, evidence_dir, [("false_alarm", False), ("confirmed", False)] * 5 + [("not_found", False)],
                  seed=1)
    out = retrain(cfg, store, promote="never", **kw)
    assert out["better_on_both"] and out["status"].startswith("better, not promoted") and channel.version() == 0
    assert out["verdicts"] == 12 and out["skipped"]["other_verdict"] == 1
    out = retrain(cfg, store, **kw)
    held = out["held_back"]
    assert held["new"]["false_alarms_left"] < held["current"]["false_alarms_left"]
    assert held["new"]["fights_kept"] == held["current"]["fights_kept"] > 0
    assert out["base_cv"]["f1"] >= out["parent_base_cv"]["f1"]
    assert out["status"] == "promoted" and load_config(path).settings.conflict_model == out["version"]
    assert channel.current().settings.conflict_model == out["version"]
    assert reg.get(out["version"]).scores["promoted"] is True
    assert len([v for v in reg.versions() if not v.shipped]) == 2  # the unpromoted one is kept as a version

    # false alarms that look exactly like the base data's fights: held back they are "fixed", but the base CV
    # loses fights -> never promoted
    store.r.delete(*store.r.keys(f"{store.p}:*"))
    (tmp_path / "b").mkdir()
    path2 = config_file(tmp_path / "b")
    cfg2 = load_config(path2)
    resolved_site(store, cfg2.alerts.evidence_dir, [("false_alarm", True)] * 12, seed=2)
    reg2 = Registry(Path(cfg2.settings.data_dir) / "models" / "conflict", reg.shipped_dir, reg.default_path)
    out = retrain(cfg2, store, **{**kw, "config_path": path2, "registry": reg2})
    assert out["held_back"]["new"]["accuracy"] > out["held_back"]["current"]["accuracy"]
    assert out["base_cv"]["recall"] < out["parent_base_cv"]["recall"]
    assert not out["better_on_both"] and out["status"] == "kept current"
    assert load_config(path2).settings.conflict_model is None


# --------------------------------------------------------------------------- admin API and the models page


def made_version(data_dir: Path) -> str:
    reg = Registry(data_dir / "models" / "conflict")
    return reg.add(ConflictModel.load(DEFAULT_MODEL),
                   {"parent": reg.default, "created": "2026-11-29T08:00:00Z", "created_ts": time.time(),
                    "base_cv": {"f1": 0.61, "precision": 0.7, "recall": 0.55},
                    "held_back": {"new": {"verdicts": 4, "false_alarms_left": 0, "fights_kept": 2, "accuracy": 1.0},
                                  "current": {"verdicts": 4, "false_alarms_left": 2, "fights_kept": 2,
                                              "accuracy": 0.5}},
                    "training": {"site_verdicts": 9, "site_false_alarms": 5, "base_clips": 199},
                    "decision": "better on both"}).name


def api_with_data_dir(api, tmp_path: Path) -> str:
    from conftest import API_CONFIG

    api.app.state.config = parse_config({**API_CONFIG, "settings": {"data_dir": str(tmp_path)}})
    api.app.state.config_path = tmp_path / "gw.yaml"
    return made_version(tmp_path)


def test_admin_lists_versions_and_activates_them(api, tmp_path):
    name = api_with_data_dir(api, tmp_path)
    admin = api.headers_for("admin")
    assert api.get("/api/admin/conflict/models").status_code == 403  # an operator may not
    assert api.post(f"/api/admin/conflict/models/{name}/activate").status_code == 403
    r = api.get("/api/admin/conflict/models", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["active"] == DEFAULT_MODEL.stem and [v["name"] for v in body["versions"]][-1] == name
    assert next(v for v in body["versions"] if v["name"] == name)["held_back"]["new"]["false_alarms_left"] == 0
    r = api.post(f"/api/admin/conflict/models/{name}/activate", headers=admin)
    assert r.status_code == 200 and r.json()["active"] == name
    channel = ConfigChannel(api.store.r, api.store.p)
    assert channel.current().settings.conflict_model == name
    assert load_config(tmp_path / "gw.yaml").settings.conflict_model == name
    assert api.get("/api/audit", headers=admin).json()["entries"][-1]["actor"] == "admin"
    r = api.post("/api/admin/conflict/models/conflict-v99/activate", headers=admin)
    assert r.status_code == 404 and "conflict-v3" in r.text


def test_the_models_page_lists_versions_and_rolls_back_with_one_click(api, browser_page, tmp_path):
    name = api_with_data_dir(api, tmp_path)
    api.app.state.config, _ = activate(api.app.state.config, name, channel=ConfigChannel(api.store.r, api.store.p))
    assert api.get("/admin/models", headers=api.headers_for("op")).status_code in (403, 303, 302, 401)
    page = browser_page(cookies=api.cookies_for("admin"))
    page.goto(f"{api.base_url}/admin/models")
    page.wait_for_selector(f"tr.active[data-version='{name}']", timeout=WAIT_MS)
    rows = page.locator("tbody tr")
    assert rows.count() >= 2 and "false alarms left 0 vs 2" in page.inner_text("tbody")
    shot(page, "models-page")
    page.click(f"tr[data-version='{DEFAULT_MODEL.stem}'] button:has-text('Roll back')")
    page.wait_for_selector(f"tr.active[data-version='{DEFAULT_MODEL.stem}']", timeout=WAIT_MS)
    assert wait_for(lambda: ConfigChannel(api.store.r, api.store.p).current().settings.conflict_model
                    == DEFAULT_MODEL.stem)
    assert page.inner_text("#status").startswith(DEFAULT_MODEL.stem)
    assert api.get("/api/admin/conflict/models", headers=api.headers_for("admin")).json()["active"] == DEFAULT_MODEL.stem


def test_the_admin_page_links_to_the_conflict_models(api, browser_page):
    page = browser_page(cookies=api.cookies_for("admin"))
    page.goto(f"{api.base_url}/admin")
    page.click('[data-role="models-link"]')
    page.wait_for_url(f"{api.base_url}/admin/models", timeout=WAIT_MS)
    page.wait_for_selector(f"tr[data-version='{DEFAULT_MODEL.stem}']", timeout=WAIT_MS)


def test_retrain_refuses_while_a_motion_model_runs(store, tmp_path):
    """A new version is a trees model; judged against a running motion model (v4) its base CV would be compared with
    v3's recipe, not with the model it would replace: retrain says so and makes nothing."""
    cfg = load_config(config_file(tmp_path, conflict_model="conflict-v4"))
    out = retrain(cfg, store, base=synthetic_base(), progress=False, min_verdicts=1)
    assert out["status"] == "not supported" and out["current"] == "conflict-v4" and "conflict-v3" in out["why"]
    assert not any(v for v in Registry.for_config(cfg).versions() if not v.shipped)
