"""`kling-gateway motion|lip-sync|talking-photo create` (docs/contract.md §7): each creates its
task asynchronously through the SDK, then prints the answer or, with ``--wait``/``--output``,
waits like `videos create` does. Choices come from ``protocol.enums``."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path

from kling_gateway.cli.client import (
    SubParsers,
    UsageError,
    add_wait_options,
    after_create,
    set_handler,
)
from kling_gateway.client import Client
from kling_gateway.protocol.enums import (
    CHARACTER_ORIENTATIONS,
    MAX_AUDIO_FILE_BYTES,
    MOTION_MODELS,
    MOTION_MODES,
    TALKING_PHOTO_DURATIONS,
    TALKING_PHOTO_MODELS,
    VOICE_LANGUAGES,
    YES_NO,
)


def add_kind_commands(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    _add_motion(commands, common)
    _add_lip_sync(commands, common)
    _add_talking_photo(commands, common)


def _create_parser(
    commands: SubParsers, common: argparse.ArgumentParser, name: str, what: str
) -> argparse.ArgumentParser:
    group = commands.add_parser(name, help=f"create {what} on a running gateway")
    actions = group.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common], help=f"create {what}")
    create.add_argument("--callback-url", help="POST the final body here")
    return create


def _add_motion(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    create = _create_parser(commands, common, "motion", "a motion transfer")
    create.add_argument("image_url", metavar="IMAGE_URL", help="the character")
    create.add_argument("video_url", metavar="VIDEO_URL", help="the motion to perform")
    create.add_argument(
        "--orientation",
        choices=CHARACTER_ORIENTATIONS,
        default="image",
        help="follow the image's or the video's orientation (default image)",
    )
    create.add_argument("--mode", choices=MOTION_MODES, default="std")
    create.add_argument("--model", choices=MOTION_MODELS)
    create.add_argument("--keep-original-sound", choices=YES_NO)
    create.add_argument("--prompt")
    add_wait_options(create)
    set_handler(create, _motion)


def _add_lip_sync(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    create = _create_parser(commands, common, "lip-sync", "a lip-sync")
    source = create.add_mutually_exclusive_group(required=True)
    source.add_argument("--video-id", help="one of your finished videos")
    source.add_argument("--video-url")
    audio = create.add_mutually_exclusive_group(required=True)
    audio.add_argument("--audio-url", help="audio2video: the audio to speak")
    audio.add_argument(
        "--audio-file",
        type=Path,
        metavar="FILE",
        help="audio2video: an mp3/wav/m4a/aac file of at most 5 MB",
    )
    audio.add_argument("--text", help="text2video: the words to speak (with --voice-id)")
    create.add_argument("--voice-id")
    create.add_argument("--voice-language", choices=VOICE_LANGUAGES)
    create.add_argument("--voice-speed", type=float, help="0.8 to 2.0")
    add_wait_options(create)
    set_handler(create, _lip_sync)


def _add_talking_photo(commands: SubParsers, common: argparse.ArgumentParser) -> None:
    create = _create_parser(commands, common, "talking-photo", "a talking photo")
    create.add_argument("image_url", metavar="IMAGE_URL")
    create.add_argument("audio_url", metavar="AUDIO_URL")
    create.add_argument("--prompt")
    create.add_argument("--model", choices=TALKING_PHOTO_MODELS)
    create.add_argument("--duration", type=int, choices=TALKING_PHOTO_DURATIONS)
    create.add_argument("--mode", choices=MOTION_MODES)
    add_wait_options(create)
    set_handler(create, _talking_photo)


def _motion(client: Client, args: argparse.Namespace) -> int:
    created = client.motion.create(
        image_url=args.image_url,
        video_url=args.video_url,
        character_orientation=args.orientation,
        mode=args.mode,
        model_name=args.model,
        keep_original_sound=args.keep_original_sound,
        prompt=args.prompt,
        callback_url=args.callback_url,
        async_=True,
    )
    return after_create(client, created, args)


def _lip_sync(client: Client, args: argparse.Namespace) -> int:
    text = args.text is not None
    if text and not args.voice_id:
        raise UsageError("--text needs --voice-id")
    created = client.lip_sync.create(
        mode="text2video" if text else "audio2video",
        video_id=args.video_id,
        video_url=args.video_url,
        audio_url=args.audio_url,
        audio_type="file" if args.audio_file is not None else None,
        audio_file=_audio_file(args.audio_file),
        text=args.text,
        voice_id=args.voice_id,
        voice_language=args.voice_language,
        voice_speed=args.voice_speed,
        callback_url=args.callback_url,
        async_=True,
    )
    return after_create(client, created, args)


def _audio_file(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--audio-file {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_AUDIO_FILE_BYTES:
        raise UsageError(f"--audio-file {path}: larger than 5 MB")
    return base64.b64encode(data).decode()


def _talking_photo(client: Client, args: argparse.Namespace) -> int:
    created = client.talking_photo.create(
        image_url=args.image_url,
        audio_url=args.audio_url,
        prompt=args.prompt,
        model=args.model,
        duration=args.duration,
        mode=args.mode,
        callback_url=args.callback_url,
        async_=True,
    )
    return after_create(client, created, args)
