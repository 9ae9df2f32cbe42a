"""One uvicorn configuration for every server gridwatch runs (the CLI's, the service's, the tests' harness)."""
from __future__ import annotations

import uvicorn
from fastapi import FastAPI


def uvicorn_config(app: FastAPI, host: str, port: int, **kw) -> uvicorn.Config:
    """The server's settings; X-Forwarded-* is believed only from ``auth.trusted_proxies``.

    uvicorn believes X-Forwarded-For from 127.0.0.1 by default, which let any local process choose the address the
    login limit counts against; here nobody is trusted unless the config names them.
    """
    trusted = list(app.state.config.auth.trusted_proxies)
    return uvicorn.Config(app, host=host, port=port, log_level=kw.pop("log_level", "warning"),
                          proxy_headers=bool(trusted), forwarded_allow_ips=trusted or [], **kw)
