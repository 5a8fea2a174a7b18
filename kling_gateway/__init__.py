"""kling-gateway: a self-hostable, wire-compatible gateway for Kling video generation."""

from __future__ import annotations

__version__ = "0.1.0"
