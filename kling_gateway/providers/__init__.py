"""Providers turn a task into a video: `local` renders it here, `kling` asks the official API."""
