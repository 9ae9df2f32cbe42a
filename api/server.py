"""Serve an app: one uvicorn configuration for every server (CLI, service, tests, benchmarks)."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from streams.rtsp import free_port


def uvicorn_config(app: FastAPI, host: str, port: int, **kw) -> uvicorn.Config:
    """The server's settings; X-Forwarded-* is believed only from ``auth.trusted_proxies``.

    uvicorn believes X-Forwarded-For from 127.0.0.1 by default, which let any local process choose the address the
    login limit counts against; here nobody is trusted unless the config names them.
    """
    trusted = list(app.state.config.auth.trusted_proxies)
    return uvicorn.Config(app, host=host, port=port, log_level=kw.pop("log_level", "warning"),
                          proxy_headers=bool(trusted), forwarded_allow_ips=trusted or [], **kw)


@contextmanager
def serving(app: FastAPI, host: str = "127.0.0.1", port: int | None = None) -> Iterator[str]:
    """Run ``app`` on a real uvicorn server until the block ends; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn_config(app, host, port))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
