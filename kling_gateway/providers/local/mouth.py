"""The mouth a local lip-sync draws: lips over the lower-face region of the frame, parted by the
audio's loudness (audio_in.loudness_envelope). There is no face detection offline, so the face
is taken to be where portraits and Kling's own lip-sync sources put it, centred; the mouth
sits at two thirds of the frame's height. Not a likeness, but a visible, honest function of the
sound: silent frames show closed lips, loud ones an open mouth."""

from __future__ import annotations

import numpy as np

from kling_gateway.providers.local.render import Pixels

# Centre of the mouth, as shares of the frame's width and height.
_CENTRE = (0.5, 0.66)
# Half-width of the mouth and the half-height of a fully open one, as shares of the short side.
_HALF_WIDTH = 0.13
_HALF_OPEN = 0.075
_LIP = np.array([150, 45, 55], dtype=np.float32)
_INSIDE = np.array([35, 8, 12], dtype=np.float32)
_LIP_ALPHA = 0.85


def mouth_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the region the mouth can cover, open or closed."""
    cx, cy, half_w, half_h = _geometry(width, height)
    pad = max(1.0, half_h * 0.5)
    return (
        max(0, int(cx - half_w - pad)),
        max(0, int(cy - half_h - pad)),
        min(width, int(np.ceil(cx + half_w + pad)) + 1),
        min(height, int(np.ceil(cy + half_h + pad)) + 1),
    )


def _geometry(width: int, height: int) -> tuple[float, float, float, float]:
    short = min(width, height)
    return (
        width * _CENTRE[0],
        height * _CENTRE[1],
        max(2.0, short * _HALF_WIDTH),
        max(1.5, short * _HALF_OPEN),
    )


def draw_mouth(frame: Pixels, openness: float) -> Pixels:
    """A copy of ``frame`` with lips drawn, parted by ``openness`` (0 closed .. 1 wide open)."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    height, width = out.shape[:2]
    cx, cy, half_w, half_open = _geometry(width, height)
    x0, y0, x1, y1 = mouth_box(width, height)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    u = (xx - cx) / half_w
    opening = max(0.0, min(1.0, openness)) * half_open
    # Lips: an ellipse a little taller than the opening (a thin band when closed).
    lip_h = opening + max(1.0, half_open * 0.35)
    lips = u**2 + ((yy - cy) / lip_h) ** 2 <= 1.0
    region = out[y0:y1, x0:x1].astype(np.float32)
    region[lips] = region[lips] * (1 - _LIP_ALPHA) + _LIP * _LIP_ALPHA
    if opening >= 0.5:
        inside = (u / 0.8) ** 2 + ((yy - cy) / opening) ** 2 <= 1.0
        region[inside] = _INSIDE
    out[y0:y1, x0:x1] = np.clip(region, 0, 255).astype(np.uint8)
    return out
