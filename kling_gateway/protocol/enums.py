"""The request enums of docs/contract.md §1 and §2, once: the server, the SDK, the CLI, the
OpenAPI document (checked by tests/api/test_openapi_protocol.py), the renderer and the Kling
mapping all take them from here."""

from __future__ import annotations

from typing import Literal, get_args

VideoAction = Literal["text2video", "image2video", "extend"]
VideoModel = Literal[
    "kling-v1",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
    "kling-v3-omni",
    "kling-o1",
    "kling-v3-turbo",
]
VideoMode = Literal["std", "pro", "4k"]
AspectRatio = Literal["16:9", "9:16", "1:1"]
CameraType = Literal["simple", "down_back", "forward_up", "left_turn_forward", "right_turn_forward"]
# The state changes a client may ask a callback for (the final state is always sent, §2).
CallbackEvent = Literal["processing", "succeed", "failed"]
# The actions of POST /kling/tasks (§1); `retrieve` when the body names none.
TaskAction = Literal["retrieve", "retrieve_batch", "delete"]
# The Omni references, storyboards and element/voice lists of docs/contract.md §6.
ImageRefType = Literal["first_frame", "end_frame"]
VideoReferType = Literal["base", "feature"]
YesNo = Literal["yes", "no"]
ShotType = Literal["intelligence", "customize"]

ACTIONS: tuple[str, ...] = get_args(VideoAction)
MODELS: tuple[str, ...] = get_args(VideoModel)
TURBO_MODEL = "kling-v3-turbo"
# docs/contract.md §6: the v3 family (durations 3..15, audio) and the narrower sets of its rules.
V3_MODELS = frozenset({"kling-v3", "kling-v3-omni", TURBO_MODEL})
FOUR_K_MODELS = frozenset({"kling-v3", "kling-v3-omni"})
TURBO_ACTIONS = ("text2video", "image2video")
AUDIO_MODELS = frozenset({"kling-v2-6", *V3_MODELS})
AUDIO_PRO_ONLY_MODELS = frozenset({"kling-v2-6"})  # generate_audio there needs mode `pro`
OMNI_MODELS = frozenset({"kling-o1", "kling-v3-omni"})
STORYBOARD_MODELS = frozenset({"kling-v3", "kling-v3-omni"})
ELEMENT_MODELS = frozenset({"kling-v3", "kling-v3-omni", "kling-o1"})
VOICE_MODELS = frozenset({"kling-v2-6"})
EXTEND_MODELS = frozenset({"kling-v1", "kling-v1-6", "kling-v2-5-turbo"})
IMAGE_REF_TYPES: tuple[str, ...] = get_args(ImageRefType)
VIDEO_REFER_TYPES: tuple[str, ...] = get_args(VideoReferType)
YES_NO: tuple[str, ...] = get_args(YesNo)
SHOT_TYPES: tuple[str, ...] = get_args(ShotType)
MAX_IMAGE_REFS = 7
MAX_IMAGE_REFS_WITH_VIDEO = 4
MAX_SHOTS = 6
MAX_SHOT_PROMPT = 512
MAX_ELEMENTS = 3
MAX_VOICES = 2
MODES: tuple[str, ...] = get_args(VideoMode)
ASPECT_RATIOS: tuple[str, ...] = get_args(AspectRatio)
CAMERA_TYPES: tuple[str, ...] = get_args(CameraType)
CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
CALLBACK_EVENTS: tuple[str, ...] = get_args(CallbackEvent)
TASK_ACTIONS: tuple[str, ...] = get_args(TaskAction)
MAX_PROMPT = 2500
# Whole seconds: these on every model but the v3 ones, which take any in V3_DURATION_RANGE.
DURATIONS: tuple[int, ...] = (5, 10)
V3_DURATION_RANGE = (3, 15)  # inclusive
CFG_SCALE_RANGE = (0.0, 1.0)
CAMERA_RANGE = (-1.0, 1.0)  # every axis of camera_control.config
# POST /kling/tasks (§1): the long-poll bound and the pages of a filtered retrieve_batch.
MAX_WAIT_SECONDS = 60.0
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_OFFSET = 10**9
# docs/contract.md §7: POST /kling/motion, /kling/lip-sync, /kling/talking-photo.
CharacterOrientation = Literal["image", "video"]
MotionMode = Literal["std", "pro"]
MotionModel = Literal["kling-v2-6", "kling-v3"]
LipSyncMode = Literal["audio2video", "text2video"]
AudioType = Literal["file", "url"]
VoiceLanguage = Literal["zh", "en"]
TalkingPhotoModel = Literal[
    "kling-v1",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
]
CHARACTER_ORIENTATIONS: tuple[str, ...] = get_args(CharacterOrientation)
MOTION_MODES: tuple[str, ...] = get_args(MotionMode)
MOTION_MODELS: tuple[str, ...] = get_args(MotionModel)
LIP_SYNC_MODES: tuple[str, ...] = get_args(LipSyncMode)
AUDIO_TYPES: tuple[str, ...] = get_args(AudioType)
VOICE_LANGUAGES: tuple[str, ...] = get_args(VoiceLanguage)
TALKING_PHOTO_MODELS: tuple[str, ...] = get_args(TalkingPhotoModel)
# The reference video of a motion transfer, by character orientation (seconds).
MOTION_MAX_SECONDS = {"image": 10.0, "video": 30.0}
MAX_LIP_SYNC_TEXT = 120
VOICE_SPEED_RANGE = (0.8, 2.0)  # inclusive
MAX_AUDIO_FILE_BYTES = 5 * 1024 * 1024  # decoded
AUDIO_FORMATS = ("mp3", "wav", "m4a", "aac")
MIN_AUDIO_SECONDS = 2.0  # upstream: an audio clip of at least 2,000 ms
TALKING_PHOTO_DURATIONS: tuple[int, ...] = (5, 10)
