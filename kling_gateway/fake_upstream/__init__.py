"""A faithful fake of the official Kling API for tests and local development.

``create_fake_upstream(config)`` builds the Starlette app; ``run_fake_upstream(host, port,
config)`` serves it with uvicorn. See ``app.py`` for the routes and the admin endpoints.
"""

from __future__ import annotations

from kling_gateway.fake_upstream.app import FakeUpstream, create_fake_upstream, run_fake_upstream
from kling_gateway.fake_upstream.config import FakeUpstreamConfig, FaultRule, faults_from_json

__all__ = [
    "FakeUpstream",
    "FakeUpstreamConfig",
    "FaultRule",
    "create_fake_upstream",
    "faults_from_json",
    "run_fake_upstream",
]
