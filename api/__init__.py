"""HTTP API and the operator page."""
from .app import create_app

__all__ = ["create_app"]
