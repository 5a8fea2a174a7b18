"""The local provider's renderer: real H.264 MP4s of the asked size, length and content."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from kling_gateway.providers.local import render
from kling_gateway.providers.local.render import (
    RenderError,
    RenderSpec,
    frame_size,
    probe_video,
    render_video,
)

Frames = list[npt.NDArray[np.uint8]]
SMALL = 64  # max_side for the fast renders


def decode(path: Path) -> Frames:
    with av.open(str(path)) as container:
        return [
            np.asarray(f.to_ndarray(format="rgb24"), dtype=np.uint8)
            for f in container.decode(video=0)
        ]


def image_bytes(colour: tuple[int, int, int], size: tuple[int, int], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt)
    return buffer.getvalue()


def mean_colour(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    return np.asarray(frame.reshape(-1, 3).mean(axis=0), dtype=np.float64)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def test_default_is_720p_h264_yuv420p_mp4(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    result = render_video(out, RenderSpec("a lighthouse in a storm", 1.0, fps=4))

    with av.open(str(out)) as container:
        assert "mp4" in container.format.name
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (1280, 720)
    assert (result.width, result.height, result.frames) == (1280, 720, 4)
    assert len(decode(out)) == 4
    data = out.read_bytes()
    # "faststart": the index precedes the media, so players can start while downloading.
    assert 0 < data.find(b"moov") < data.find(b"mdat")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("aspect", "mode", "size"),
    [
        ("16:9", "std", (1280, 720)),
        ("9:16", "std", (720, 1280)),
        ("1:1", "std", (720, 720)),
        ("16:9", "pro", (1920, 1080)),
        ("9:16", "pro", (1080, 1920)),
        ("1:1", "pro", (1080, 1080)),
        ("16:9", "4k", (3840, 2160)),
        ("9:16", "4k", (2160, 3840)),
        ("1:1", "4k", (2160, 2160)),
    ],
)
def test_resolution_follows_mode_and_aspect_ratio(
    aspect: render.AspectRatio, mode: render.Mode, size: tuple[int, int]
) -> None:
    assert frame_size(aspect, mode) == size


@pytest.mark.parametrize("max_side", [16, 33, 64, 101])
def test_max_side_keeps_the_shape_with_even_sides(max_side: int) -> None:
    width, height = frame_size("16:9", "pro", max_side)
    assert width % 2 == 0 and height % 2 == 0
    assert max(width, height) <= max_side
    # Rounding each side down to even may cost up to 2 pixels of width against the ratio.
    assert abs(width - height * 16 / 9) <= 2


@pytest.mark.parametrize(
    ("aspect", "size"), [("16:9", (64, 36)), ("9:16", (36, 64)), ("1:1", (64, 64))]
)
def test_rendered_frames_have_the_aspect_ratio(
    tmp_path: Path, aspect: render.AspectRatio, size: tuple[int, int]
) -> None:
    out = tmp_path / "v.mp4"
    render_video(out, RenderSpec("shapes", 0.5, aspect_ratio=aspect, fps=4, max_side=SMALL))
    frames = decode(out)
    assert all(f.shape == (size[1], size[0], 3) for f in frames)


@pytest.mark.parametrize(("duration", "fps"), [(1.0, 8), (2.5, 6), (3.0, 10), (5.0, 24)])
def test_duration_and_frame_count_are_exact(tmp_path: Path, duration: float, fps: int) -> None:
    out = tmp_path / "v.mp4"
    result = render_video(out, RenderSpec("timing", duration, fps=fps, max_side=32))

    expected = round(duration * fps)
    assert result.frames == expected
    assert abs(result.duration - duration) <= 1 / fps
    assert len(decode(out)) == expected
    with av.open(str(out)) as container:
        # The container's own idea of the length, which is what players and ffprobe show.
        assert container.duration is not None
        assert abs(container.duration / av.time_base - duration) <= 1 / fps
    assert probe_video(out) == result


def test_same_prompt_same_video_other_prompt_other_video(tmp_path: Path) -> None:
    def frames_of(name: str, prompt: str) -> Frames:
        out = tmp_path / f"{name}.mp4"
        render_video(out, RenderSpec(prompt, 1.0, fps=4, max_side=SMALL))
        return decode(out)

    first = frames_of("a", "a red fox in the snow")
    again = frames_of("b", "a red fox in the snow")
    other = frames_of("c", "a neon city at night")

    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
    difference = np.abs(first[0].astype(int) - other[0].astype(int)).mean()
    assert difference > 10


def test_text2video_moves(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    render_video(out, RenderSpec("moving", 2.0, fps=4, max_side=SMALL))
    frames = decode(out)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 5


def test_prompt_text_is_drawn(tmp_path: Path) -> None:
    # The caption is white text on a darkened box; without a prompt there is neither.
    with_text, without = tmp_path / "t.mp4", tmp_path / "n.mp4"
    render_video(with_text, RenderSpec("HELLO WORLD " * 4, 0.25, fps=4, max_side=256))
    render_video(without, RenderSpec("", 0.25, fps=4, max_side=256))
    centre = (slice(60, 84), slice(40, 216))
    lit = (decode(with_text)[0][centre] > 230).all(axis=2).mean()
    assert lit > 0.05
    assert (decode(without)[0][centre] > 230).all(axis=2).mean() < lit / 4


def test_image2video_starts_on_the_start_image(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    red = image_bytes((200, 30, 30), (300, 200))
    render_video(out, RenderSpec("zoom", 1.0, fps=8, start_image=red, max_side=SMALL))
    frames = decode(out)
    assert len(frames) == 8
    assert np.abs(mean_colour(frames[0]) - (200, 30, 30)).max() < 8
    assert np.abs(mean_colour(frames[-1]) - (200, 30, 30)).max() < 8


def test_image2video_fades_into_the_end_image(tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    red = image_bytes((200, 30, 30), (300, 200))
    blue = image_bytes((30, 30, 200), (100, 400), "JPEG")
    spec = RenderSpec("fade", 1.0, fps=8, start_image=red, end_image=blue, max_side=SMALL)
    render_video(out, spec)
    frames = decode(out)
    assert np.abs(mean_colour(frames[0]) - (200, 30, 30)).max() < 8
    assert np.abs(mean_colour(frames[-1]) - (30, 30, 200)).max() < 8
    middle = mean_colour(frames[len(frames) // 2])
    assert 60 < middle[0] < 170 and 60 < middle[2] < 170


def test_image2video_zooms_into_the_image(tmp_path: Path) -> None:
    # Left half black, right half white: a zoom with pan shifts the edge between them.
    picture = Image.new("RGB", (200, 100), (0, 0, 0))
    picture.paste((255, 255, 255), (100, 0, 200, 100))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    out = tmp_path / "v.mp4"
    render_video(out, RenderSpec("p", 1.0, fps=8, start_image=buffer.getvalue(), max_side=SMALL))
    frames = decode(out)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 3


def test_extend_appends_duration_to_the_source(tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"
    render_video(source, RenderSpec("the source", 1.0, aspect_ratio="9:16", fps=8, max_side=SMALL))
    out = tmp_path / "extended.mp4"
    # Size and fps in the spec are ignored: an extension keeps the source's.
    result = render_video(out, RenderSpec("", 2.0, fps=30, source_video=source))

    assert (result.width, result.height) == (36, 64)
    assert result.frames == 8 + 16
    assert abs(result.duration - 3.0) <= 1 / 8
    original, extended = decode(source), decode(out)
    assert len(extended) == 24
    # The source's frames come first (re-encoded, so nearly but not bit-for-bit equal).
    for before, after in zip(original, extended[:8], strict=True):
        assert np.abs(before.astype(int) - after.astype(int)).mean() < 4
    # The continuation picks up where the source ended.
    assert np.abs(original[-1].astype(int) - extended[8].astype(int)).mean() < 12


def test_extend_of_an_unreadable_source_is_a_render_error(tmp_path: Path) -> None:
    source = tmp_path / "source.mp4"
    source.write_bytes(b"not a video at all")
    out = tmp_path / "extended.mp4"
    with pytest.raises(RenderError, match="could not read video"):
        render_video(out, RenderSpec("", 1.0, source_video=source))
    assert not out.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("which", "data"),
    [
        ("start", b"definitely not an image"),
        ("start", image_bytes((1, 2, 3), (50, 50))[:60]),  # a truncated PNG
        ("end", b"\xff\xd8\xff\xe0 broken jpeg"),
    ],
)
def test_corrupt_image_is_a_render_error(tmp_path: Path, which: str, data: bytes) -> None:
    good = image_bytes((10, 20, 30), (40, 40))
    start, end = (data, good) if which == "start" else (good, data)
    out = tmp_path / "v.mp4"
    spec = RenderSpec("x", 1.0, fps=4, start_image=start, end_image=end, max_side=SMALL)
    with pytest.raises(RenderError, match=f"the {which} image could not be decoded"):
        render_video(out, spec)
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_failure_while_rendering_cleans_up_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = render._scene_frames

    def crash_midway(*args: object, **kwargs: object) -> Iterator[object]:
        frames = real(*args, **kwargs)  # type: ignore[arg-type]
        for _ in range(6):
            yield next(frames)
        raise RuntimeError("boom")

    monkeypatch.setattr(render, "_scene_frames", crash_midway)
    out = tmp_path / "v.mp4"
    out.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="boom"):
        render_video(out, RenderSpec("x", 1.0, fps=8, max_side=SMALL))
    assert out.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_failure_after_encoding_removes_the_written_part_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []

    def failing_probe(path: Path) -> render.RenderedVideo:
        # The part file of this render: beside the target, under a name of its own.
        assert path.parent == tmp_path
        assert path.name.startswith("v.mp4.") and path.name.endswith(".part")
        seen.append(len(decode(path)))  # the encoder really did write a complete file
        raise RenderError("probe failed")

    monkeypatch.setattr(render, "probe_video", failing_probe)
    out = tmp_path / "v.mp4"
    with pytest.raises(RenderError, match="probe failed"):
        render_video(out, RenderSpec("x", 1.0, fps=8, max_side=SMALL))
    assert seen == [8]
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_probe_of_a_non_video_is_a_render_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(RenderError):
        probe_video(junk)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"aspect_ratio": "4:3"},
        {"mode": "8k"},
        {"duration": 0},
        {"duration": -1},
        {"fps": 0},
        {"max_side": 4},
        {"end_image": b"x"},  # an end image without a start image
    ],
)
def test_invalid_specs_are_render_errors(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {"prompt": "x", "duration": 1.0, **kwargs}
    with pytest.raises(RenderError):
        RenderSpec(**arguments)  # type: ignore[arg-type]


def test_two_renders_of_one_video_at_once_publish_one_whole_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers rendering the same video (one of them lost its lease mid-render): each
    writes its own part file, so the file that lands is one whole render, never a mix."""
    specs = [
        RenderSpec("the first worker", 2.0, fps=8, max_side=SMALL),
        RenderSpec("the second worker", 1.0, fps=8, max_side=SMALL),
    ]
    references = []
    for index, spec in enumerate(specs):
        alone = tmp_path / f"alone-{index}.mp4"
        render_video(alone, spec)
        references.append(decode(alone))

    real = render._encode
    side_by_side = threading.Barrier(2, timeout=30)

    def encode_together(path: Path, *args: Any) -> None:
        side_by_side.wait()  # both renders write at the same time
        real(path, *args)
        side_by_side.wait()  # and both have written all before either renames

    monkeypatch.setattr(render, "_encode", encode_together)
    shared = tmp_path / "shared"
    shared.mkdir()
    out = shared / "v.mp4"
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda spec: render_video(out, spec), specs))

    landed = decode(out)
    assert probe_video(out) in results
    assert any(
        len(landed) == len(ref)
        and all(np.array_equal(a, b) for a, b in zip(landed, ref, strict=True))
        for ref in references
    )
    assert leftovers(shared) == []
