"""Learning from the room on the development data: does feeding a site's own verdicts back lower its false alarms
without losing its fights?

    python bench/retrain_site.py [--data ../shared/data/fight-dev] [--redis redis://127.0.0.1:6379/0]

A few source videos of fight-dev play "the site" (its cameras); every other source is the base data. For each site
and each half of its clips (split by label, then swapped):

1. the running model is the shipped recipe fitted on the base data alone (a model that never saw the site);
2. the runtime's ``ConflictMonitor`` (default rule: the operating point, vetoes, persistence) runs over the feedback
   half's clips (each clip its own camera, pose already in the cached observations) and every alert it starts
   becomes a case in a real Redis ``CaseStore``, its window kept as the publisher keeps it; the case is resolved as
   the people who went would: ``false_alarm`` on a noFight clip, ``confirmed`` on a fight clip;
3. ``gridwatch.learning.retrain`` (what ``gridwatch conflict retrain`` runs) makes a new version from the base data
   plus those verdicts and promotes it only when better on both of its checks;
4. on the other half of the site (never fed back), the monitor runs with the old and the new version: false alarms
   (noFight clips alerted) and fights caught (fight clips alerted), before and after.

Writes bench/results/retrain_site.json; the last line printed is its summary as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
# each a few sources with both kinds of clip: a busy shop, street scenes, mixed footage, calm scenes + two streets
SITES = {
    "shop+street": ["DXybks-LsLo", "lmfaDmCCRoY"],
    "four-streets": ["s-jW4cyavW0", "d2xXLU4JKwI", "tf_X7GtOGyE", "g0x9-0pOuhw"],
    "six-mixed": ["Wwu20e9pfxg", "V726w0IKCp4", "DVi04Mxaz60", "-9z5dwsPS-c", "jQeOqXpcKqg", "uss1EmwHVYQ"],
    "calm+two": ["Synopsis", "CamNet", "P-A3ujCib6Q", "IZjLv7alWTk"],
}


def alerts_of(model, obs: list) -> list:
    """The start incidents the runtime's monitor raises on one clip (its own camera), default zone rule."""
    from gridwatch.config import ConflictRule
    from vision.conflict.monitor import ConflictMonitor

    mon = ConflictMonitor("site-cam", "zone", ConflictRule(enabled=True), model, pose=None)
    return [inc for ob in obs if (inc := mon.push(ob)) is not None and inc.phase == "start"]


def count(model, clips: list[int], obs: list, y: np.ndarray) -> dict:
    fired = np.array([bool(alerts_of(model, obs[c])) for c in clips], bool)
    lab = y[clips]
    return {"false_alarms": int((fired & (lab == 0)).sum()), "no_fight_clips": int((lab == 0).sum()),
            "fights_caught": int((fired & (lab == 1)).sum()), "fight_clips": int((lab == 1).sum())}


def feed_back(store, evidence_dir: Path, model, clips: list[int], obs: list, y: np.ndarray, names: list[str],
              t0: float, rng) -> dict:
    """Alerts on the feedback clips -> cases resolved with the clip's truth, windows kept as the publisher keeps
    them; clips in a random order in time."""
    from alerts import Alert
    from alerts.cases import incident_id_for
    from alerts.publisher import WindowWriter

    writer = WindowWriter(evidence_dir / "conflict-windows")
    given = {"confirmed": 0, "false_alarm": 0}
    for order, c in enumerate(rng.permutation(clips)):
        for inc in alerts_of(model, obs[c]):
            ts = t0 + 60.0 * order + inc.ts
            iid = incident_id_for(names[c], "zone", "conflict", ts)
            _, case = store.ingest(Alert(kind="conflict", camera_id=names[c], camera_name=names[c], grid_id="site",
                                         zone_id="zone", ts=ts, count=inc.count, score=inc.score, detail=inc.detail,
                                         snapshot=None, lat=0.0, lon=0.0, incident_id=iid), 0)
            writer.write(iid, {"incident_id": iid, "kind": "conflict", "ts": ts, **inc.evidence})
            verdict = "confirmed" if y[c] == 1 else "false_alarm"
            store.transition(case.id, "acknowledge", "operator")
            store.transition(case.id, "resolve", "operator", verdict=verdict)
            given[verdict] += 1
    return given


def run_site(name: str, sources: list[str], base_all, obs: list, y: np.ndarray, src: np.ndarray, names: list[str],
             redis_url: str, seed: int, site_weight: float) -> list[dict]:
    import redis
    import yaml

    from alerts import CaseStore
    from gridwatch.config import load_config
    from gridwatch.configsync import ConfigChannel
    from gridwatch.learning import fit_version, retrain
    from models.conflict.registry import Registry

    site = np.isin(src, sources)
    base = base_all.subset(~site)
    current = fit_version(base, np.zeros((0, base.X.shape[1])), np.zeros(0, int), meta={"version": "site-less"})
    rng = np.random.default_rng(seed)
    halves: list[list[int]] = [[], []]
    for label in (0, 1):  # each half gets half of each kind
        idx = rng.permutation(np.nonzero(site & (y == label))[0]).tolist()
        halves[0] += idx[::2]
        halves[1] += idx[1::2]
    out = []
    for k in (0, 1):
        feedback, held = halves[k], halves[1 - k]
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            shipped = tmp / "shipped"
            shipped.mkdir()
            current.save(shipped / "conflict-base.json")
            path = tmp / "gw.yaml"
            path.write_text(yaml.safe_dump({"grids": [{"id": "site"}], "cameras": [],
                                            "settings": {"data_dir": "data"}}))
            cfg = load_config(path)
            registry = Registry(cfg.settings.data_dir / "models" / "conflict", shipped, shipped / "conflict-base.json")
            client = redis.Redis.from_url(redis_url)
            store = CaseStore(client, prefix=f"gwbench-{uuid.uuid4().hex[:8]}")
            try:
                given = feed_back(store, cfg.alerts.evidence_dir, current, feedback, obs, y, names,
                                  time.time() - 86400, rng)
                t = time.perf_counter()
                r = retrain(cfg, store, config_path=path, channel=ConfigChannel(client, store.p), min_verdicts=4,
                            base=base, site_weight=site_weight, registry=registry, progress=False)
                retrain_s = time.perf_counter() - t
            finally:
                for key in client.scan_iter(f"{store.p}:*"):
                    client.delete(key)
                client.close()
            before = count(current, held, obs, y)
            row = {"site": name, "sources": sources, "half": k, "feedback_clips": len(feedback),
                   "verdicts_given": given, "retrain": {key: r.get(key) for key in (
                       "status", "better_on_both", "decision", "held_back", "base_cv", "parent_base_cv", "training")},
                   "retrain_s": round(retrain_s, 1), "eval_clips": len(held), "before": before}
            if r.get("version"):
                new = registry.load(r["version"])
                row["candidate"] = count(new, held, obs, y)
                row["after"] = row["candidate"] if r["status"] == "promoted" else before
            else:
                row["candidate"] = row["after"] = before
            out.append(row)
            print(json.dumps({k2: row[k2] for k2 in ("site", "half", "verdicts_given", "before", "candidate")}
                             | {"status": r["status"]}), file=sys.stderr, flush=True)
    return out


def total(rows: list[dict], key: str) -> dict:
    return {f: int(sum(r[key][f] for r in rows)) for f in rows[0][key]}


def main() -> int:
    import os

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fight-dev")
    ap.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--site-weight", type=float, default=None, help="default: gridwatch.learning.SITE_WEIGHT")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="random half splits per site (each run twice, swapped)")
    ap.add_argument("--out", type=Path, default=RESULTS / "retrain_site.json")
    args = ap.parse_args()

    from gridwatch.learning import SITE_WEIGHT, load_base
    from models.conflict import train as T

    weight = args.site_weight if args.site_weight is not None else SITE_WEIGHT
    clips = T.list_clips(args.data)
    obs = T.observations(clips)
    base_all = load_base(args.data, observations=obs)
    sources = T.read_sources(args.data)
    src = np.array([sources[c.path.stem] for c in clips])
    y = np.array([c.label for c in clips])
    names = [c.path.stem for c in clips]
    rows = []
    for rep in range(args.repeats):
        for i, (name, srcs) in enumerate(SITES.items()):
            rows += [{**r, "repeat": rep} for r in run_site(name, srcs, base_all, obs, y, src, names, args.redis,
                                                             args.seed + 100 * rep + i, weight)]
    before, cand, after = total(rows, "before"), total(rows, "candidate"), total(rows, "after")
    summary = {"bench": "retrain_site", "sites": len(SITES), "repeats": args.repeats, "runs": len(rows),
               "site_weight": weight,
               "promoted": sum(r["retrain"]["status"] == "promoted" for r in rows),
               "no_fight_clips": before["no_fight_clips"], "fight_clips": before["fight_clips"],
               "false_alarms_before": before["false_alarms"], "false_alarms_after": after["false_alarms"],
               "false_alarms_candidate": cand["false_alarms"],
               "fights_caught_before": before["fights_caught"], "fights_caught_after": after["fights_caught"],
               "fights_caught_candidate": cand["fights_caught"],
               "runs_candidate_fewer_false_alarms": sum(r["candidate"]["false_alarms"] < r["before"]["false_alarms"]
                                                        for r in rows),
               "runs_candidate_more_false_alarms": sum(r["candidate"]["false_alarms"] > r["before"]["false_alarms"]
                                                       for r in rows),
               "runs_candidate_lost_fights": sum(r["candidate"]["fights_caught"] < r["before"]["fights_caught"]
                                                 for r in rows),
               "runs_promoted_lost_fights": sum(r["after"]["fights_caught"] < r["before"]["fights_caught"]
                                                for r in rows),
               "verdicts_fed_back": {v: int(sum(r["verdicts_given"][v] for r in rows))
                                     for v in ("confirmed", "false_alarm")}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": rows, "data": str(args.data),
                                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
