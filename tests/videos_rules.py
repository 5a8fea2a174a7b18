"""The rules of docs/contract.md §6 as a table: for every row, bodies that pass and bodies
refused with a 400 naming a field. Used by tests/domain (validation alone) and tests/api (the
whole HTTP endpoint). Element and voice ids are the placeholders ELEMENT_n / VOICE_n, which the
API tests replace with ids registered for the caller."""

from __future__ import annotations

from typing import Any

IMG = "https://img.example/a.png"
IMG2 = "https://img.example/b.png"
VID = "https://vid.example/a.mp4"
T2V: dict[str, Any] = {"action": "text2video", "prompt": "a ceramic mug on marble"}
I2V: dict[str, Any] = {"action": "image2video", "prompt": "it moves", "start_image_url": IMG}
EXT: dict[str, Any] = {"action": "extend", "video_id": "VIDEO"}
TURBO: dict[str, Any] = {**T2V, "model": "kling-v3-turbo"}
O1: dict[str, Any] = {**T2V, "model": "kling-o1"}
OMNI: dict[str, Any] = {**T2V, "model": "kling-v3-omni"}
V3: dict[str, Any] = {**T2V, "model": "kling-v3"}


def imgs(n: int, **item: Any) -> list[dict[str, Any]]:
    return [{"image_url": f"https://img.example/{i}.png", **item} for i in range(n)]


def shots(*durations: int) -> list[dict[str, Any]]:
    return [
        {"index": i + 1, "prompt": f"shot {i + 1}", "duration": d} for i, d in enumerate(durations)
    ]


STORY: dict[str, Any] = {**V3, "multi_shot": True, "shot_type": "customize"}
V26_AUDIO: dict[str, Any] = {**T2V, "model": "kling-v2-6", "mode": "pro", "generate_audio": True}

# (rule, bodies accepted, (body, field) refused)
Row = tuple[str, list[dict[str, Any]], list[tuple[dict[str, Any], str]]]
RULES: list[Row] = [
    (
        "kling-v3-turbo is a model",
        [TURBO, {**I2V, "model": "kling-v3-turbo"}],
        [({**T2V, "model": "kling-v3-turbo-x"}, "model")],
    ),
    (
        "duration 3..15 on v3 models",
        [{**V3, "duration": 3}, {**OMNI, "duration": 15}, {**TURBO, "duration": 7}],
        [({**TURBO, "duration": 2}, "duration"), ({**OMNI, "duration": 16}, "duration")],
    ),
    (
        "duration 5 only on kling-o1",
        [O1, {**O1, "duration": 5.0}],
        [({**O1, "duration": 10}, "duration"), ({**O1, "duration": 3}, "duration")],
    ),
    (
        "duration 5 or 10 elsewhere",
        [{**T2V, "duration": 10}, {**T2V, "model": "kling-v2-6", "duration": 5}],
        [
            ({**T2V, "duration": 7}, "duration"),
            ({**T2V, "model": "kling-v2-6", "duration": 3}, "duration"),
        ],
    ),
    (
        "4k on kling-v3 and kling-v3-omni only",
        [{**V3, "mode": "4k"}, {**OMNI, "mode": "4k"}],
        [
            ({**TURBO, "mode": "4k"}, "mode"),
            ({**O1, "mode": "4k"}, "mode"),
            ({**T2V, "mode": "4k"}, "mode"),
        ],
    ),
    (
        "4k never with camera_control or Omni references",
        [{**OMNI, "mode": "pro", "image_list": imgs(1)}],
        [
            ({**V3, "mode": "4k", "camera_control": {"type": "down_back"}}, "mode"),
            ({**OMNI, "mode": "4k", "image_list": imgs(1)}, "mode"),
            ({**OMNI, "mode": "4k", "video_list": [{"video_url": VID}]}, "mode"),
        ],
    ),
    (
        "generate_audio: v3 models, kling-v2-6 in pro, never kling-o1, never with video_list",
        [
            {**V3, "generate_audio": True},
            {**OMNI, "generate_audio": True, "image_list": imgs(1)},
            V26_AUDIO,
            {**TURBO, "generate_audio": True},
        ],
        [
            ({**O1, "generate_audio": True}, "generate_audio"),
            ({**T2V, "model": "kling-v2-6", "generate_audio": True}, "generate_audio"),
            ({**T2V, "model": "kling-v2-5-turbo", "generate_audio": True}, "generate_audio"),
            (
                {**OMNI, "generate_audio": True, "video_list": [{"video_url": VID}]},
                "generate_audio",
            ),
        ],
    ),
    (
        "kling-v3-turbo: std/pro, audio always on, first frame only, no extras",
        [{**TURBO, "mode": "pro"}, {**TURBO, "mode": "std"}, {**I2V, "model": "kling-v3-turbo"}],
        [
            ({**TURBO, "generate_audio": False}, "generate_audio"),
            ({**EXT, "model": "kling-v3-turbo"}, "action"),
            ({**I2V, "model": "kling-v3-turbo", "end_image_url": IMG2}, "end_image_url"),
            ({**TURBO, "camera_control": {"type": "down_back"}}, "camera_control"),
            ({**TURBO, "cfg_scale": 0.5}, "cfg_scale"),
            ({**TURBO, "negative_prompt": "blur"}, "negative_prompt"),
            ({**TURBO, "image_list": imgs(1)}, "image_list"),
            ({**TURBO, "video_list": [{"video_url": VID}]}, "video_list"),
            ({**TURBO, "element_list": [{"element_id": "ELEMENT_1"}]}, "element_list"),
            ({**TURBO, "voice_list": [{"voice_id": "VOICE_1"}]}, "voice_list"),
            ({**TURBO, "multi_shot": True, "shot_type": "intelligence"}, "multi_shot"),
        ],
    ),
    (
        "extend: kling-v1, kling-v1-6, kling-v2-5-turbo only; no Omni references",
        [EXT, {**EXT, "model": "kling-v1-6"}, {**EXT, "model": "kling-v2-5-turbo"}],
        [
            ({**EXT, "model": "kling-v2-6"}, "model"),
            ({**EXT, "model": "kling-v3"}, "model"),
            ({**EXT, "model": "kling-o1"}, "model"),
        ],
    ),
    (
        "negative_prompt, camera_control, cfg_scale: not on kling-o1, not with Omni references",
        [
            {**OMNI, "negative_prompt": "blur", "cfg_scale": 0.5},
            {**V3, "camera_control": {"type": "down_back"}},
        ],
        [
            ({**O1, "negative_prompt": "blur"}, "negative_prompt"),
            ({**O1, "camera_control": {"type": "down_back"}}, "camera_control"),
            ({**O1, "cfg_scale": 0.5}, "cfg_scale"),
            ({**OMNI, "image_list": imgs(1), "negative_prompt": "blur"}, "negative_prompt"),
            ({**OMNI, "video_list": [{"video_url": VID}], "cfg_scale": 0.5}, "cfg_scale"),
        ],
    ),
    (
        "image_list: kling-o1 and kling-v3-omni, 1..7 items, http(s) image_url, type",
        [
            {**O1, "image_list": imgs(1)},
            {**OMNI, "image_list": imgs(7)},
            {**O1, "prompt": "<<<image_1>>> walks", "image_list": imgs(1, type="first_frame")},
            {
                **O1,
                "image_list": [
                    {"image_url": IMG, "type": "first_frame"},
                    {"image_url": IMG2, "type": "end_frame"},
                ],
            },
        ],
        [
            ({**V3, "image_list": imgs(1)}, "image_list"),
            ({**T2V, "image_list": imgs(1)}, "image_list"),
            ({**O1, "image_list": []}, "image_list"),
            ({**O1, "image_list": imgs(8)}, "image_list"),
            ({**O1, "image_list": [{"image_url": "ftp://x/a.png"}]}, "image_list[0].image_url"),
            ({**O1, "image_list": [{"type": "first_frame"}]}, "image_list[0]"),
            ({**O1, "image_list": imgs(1, type="middle")}, "image_list[0].type"),
        ],
    ),
    (
        "image_list: at most 4 with video_list; start/end images count; one first, one end frame",
        [
            {
                **O1,
                "image_list": imgs(4),
                "video_list": [{"video_url": VID, "refer_type": "feature"}],
            },
            {**{**I2V, "model": "kling-o1"}, "image_list": imgs(6)},
        ],
        [
            ({**O1, "image_list": imgs(5), "video_list": [{"video_url": VID}]}, "image_list"),
            ({**I2V, "model": "kling-o1", "image_list": imgs(7)}, "image_list"),
            ({**I2V, "model": "kling-o1", "image_list": imgs(1, type="first_frame")}, "image_list"),
            ({**O1, "image_list": imgs(2, type="first_frame")}, "image_list"),
            (
                {**O1, "image_list": imgs(2, type="end_frame") + imgs(1, type="first_frame")},
                "image_list",
            ),
            ({**O1, "image_list": imgs(1, type="end_frame")}, "image_list"),
        ],
    ),
    (
        "video_list: 1 item, video_url, refer_type, keep_original_sound; base without frames",
        [
            {**O1, "video_list": [{"video_url": VID}]},
            {
                **OMNI,
                "prompt": "like <<<video_1>>>",
                "video_list": [
                    {"video_url": VID, "refer_type": "base", "keep_original_sound": "yes"}
                ],
            },
            {
                **O1,
                "image_list": imgs(1, type="first_frame"),
                "video_list": [{"video_url": VID, "refer_type": "feature"}],
            },
        ],
        [
            ({**V3, "video_list": [{"video_url": VID}]}, "video_list"),
            ({**O1, "video_list": []}, "video_list"),
            ({**O1, "video_list": [{"video_url": VID}, {"video_url": VID}]}, "video_list"),
            ({**O1, "video_list": [{"refer_type": "base"}]}, "video_list[0]"),
            ({**O1, "video_list": [{"video_url": "file:///a.mp4"}]}, "video_list[0].video_url"),
            (
                {**O1, "video_list": [{"video_url": VID, "refer_type": "style"}]},
                "video_list[0].refer_type",
            ),
            (
                {**O1, "video_list": [{"video_url": VID, "keep_original_sound": "maybe"}]},
                "video_list[0].keep_original_sound",
            ),
            (
                {
                    **O1,
                    "image_list": imgs(1, type="first_frame"),
                    "video_list": [{"video_url": VID}],
                },
                "video_list",
            ),
            ({**I2V, "model": "kling-o1", "video_list": [{"video_url": VID}]}, "video_list"),
            ({**EXT, "video_list": [{"video_url": VID}]}, "video_list"),
        ],
    ),
    (
        "the prompt cites only supplied references",
        [{**O1, "prompt": "<<<image_1>>> and <<<image_2>>>", "image_list": imgs(2)}],
        [
            ({**O1, "prompt": "<<<image_3>>>", "image_list": imgs(2)}, "prompt"),
            ({**O1, "prompt": "<<<video_1>>>", "image_list": imgs(1)}, "prompt"),
            (
                {
                    **V26_AUDIO,
                    "prompt": "<<<voice_2>>> speaks",
                    "voice_list": [{"voice_id": "VOICE_1"}],
                },
                "prompt",
            ),
        ],
    ),
    (
        "storyboards: multi_shot on kling-v3 and kling-v3-omni; intelligence needs a prompt",
        [
            {**V3, "multi_shot": True, "shot_type": "intelligence"},
            {**OMNI, "multi_shot": True, "shot_type": "intelligence"},
            {**V3, "multi_shot": False},
        ],
        [
            ({**T2V, "multi_shot": True, "shot_type": "intelligence"}, "multi_shot"),
            ({**O1, "multi_shot": True, "shot_type": "intelligence"}, "multi_shot"),
            ({**V3, "multi_shot": True}, "shot_type"),
            ({**V3, "multi_shot": True, "shot_type": "auto"}, "shot_type"),
            ({**V3, "shot_type": "intelligence"}, "shot_type"),
            ({**V3, "multi_prompt": shots(5)}, "multi_prompt"),
            ({**V3, "multi_shot": True, "shot_type": "intelligence", "prompt": " "}, "prompt"),
            (
                {**V3, "multi_shot": True, "shot_type": "intelligence", "multi_prompt": shots(5)},
                "multi_prompt",
            ),
        ],
    ),
    (
        "storyboards: customize takes 1..6 shots, indices 1.. without gaps, durations sum",
        [
            {k: v for k, v in STORY.items() if k != "prompt"}
            | {"duration": 6, "multi_prompt": shots(2, 2, 2)},
            {**STORY, "duration": 5, "multi_prompt": shots(5)},
            {**STORY, "duration": 12, "multi_prompt": shots(2, 2, 2, 2, 2, 2)},
        ],
        [
            ({**STORY, "duration": 5}, "multi_prompt"),
            ({**STORY, "duration": 5, "multi_prompt": []}, "multi_prompt"),
            ({**STORY, "duration": 7, "multi_prompt": shots(1, 1, 1, 1, 1, 1, 1)}, "multi_prompt"),
            ({**STORY, "duration": 6, "multi_prompt": shots(2, 2)}, "multi_prompt"),
            (
                {
                    **STORY,
                    "duration": 5,
                    "multi_prompt": [
                        {"index": 1, "prompt": "a", "duration": 2},
                        {"index": 3, "prompt": "b", "duration": 3},
                    ],
                },
                "multi_prompt[1].index",
            ),
            (
                {
                    **STORY,
                    "duration": 5,
                    "multi_prompt": [{"index": 1, "prompt": "", "duration": 5}],
                },
                "multi_prompt[0].prompt",
            ),
            (
                {
                    **STORY,
                    "duration": 5,
                    "multi_prompt": [{"index": 1, "prompt": "p" * 513, "duration": 5}],
                },
                "multi_prompt[0].prompt",
            ),
            (
                {
                    **STORY,
                    "duration": 5,
                    "multi_prompt": [
                        {"index": 1, "prompt": "a", "duration": 2.5},
                        {"index": 2, "prompt": "b", "duration": 2.5},
                    ],
                },
                "multi_prompt[0].duration",
            ),
            (
                {
                    **STORY,
                    "duration": 5,
                    "multi_prompt": [
                        {"index": 1, "prompt": "a", "duration": 0},
                        {"index": 2, "prompt": "b", "duration": 5},
                    ],
                },
                "multi_prompt[0].duration",
            ),
            (
                {**STORY, "duration": 5, "multi_prompt": [{"index": 1, "prompt": "a"}]},
                "multi_prompt[0]",
            ),
        ],
    ),
    (
        "element_list: 1..3 on kling-v3, kling-v3-omni, kling-o1",
        [
            {**V3, "element_list": [{"element_id": "ELEMENT_1"}]},
            {**O1, "element_list": [{"element_id": f"ELEMENT_{i}"} for i in (1, 2, 3)]},
            {**OMNI, "element_list": [{"element_id": "ELEMENT_1"}], "image_list": imgs(1)},
        ],
        [
            ({**T2V, "element_list": [{"element_id": "ELEMENT_1"}]}, "element_list"),
            ({**O1, "element_list": []}, "element_list"),
            (
                {**O1, "element_list": [{"element_id": f"ELEMENT_{i}"} for i in (1, 2, 3, 1)]},
                "element_list",
            ),
            ({**O1, "element_list": [{"element_id": ""}]}, "element_list[0].element_id"),
            ({**O1, "element_list": [{}]}, "element_list[0]"),
        ],
    ),
    (
        "voice_list: 1..2 on kling-v2-6 in pro with generate_audio true",
        [
            {**V26_AUDIO, "voice_list": [{"voice_id": "VOICE_1"}]},
            {
                **V26_AUDIO,
                "prompt": "<<<voice_1>>> and <<<voice_2>>>",
                "voice_list": [{"voice_id": "VOICE_1"}, {"voice_id": "VOICE_2"}],
            },
        ],
        [
            (
                {**V26_AUDIO, "generate_audio": False, "voice_list": [{"voice_id": "VOICE_1"}]},
                "voice_list",
            ),
            (
                {
                    **V26_AUDIO,
                    "mode": "std",
                    "generate_audio": None,
                    "voice_list": [{"voice_id": "VOICE_1"}],
                },
                "voice_list",
            ),
            ({**V3, "generate_audio": True, "voice_list": [{"voice_id": "VOICE_1"}]}, "voice_list"),
            ({**V26_AUDIO, "voice_list": []}, "voice_list"),
            (
                {
                    **V26_AUDIO,
                    "voice_list": [{"voice_id": v} for v in ("VOICE_1", "VOICE_2", "VOICE_1")],
                },
                "voice_list",
            ),
            ({**V26_AUDIO, "voice_list": [{"voice_id": 5}]}, "voice_list[0].voice_id"),
        ],
    ),
    (
        "a customised storyboard needs no prompt",
        [
            {
                "action": "text2video",
                "model": "kling-v3",
                "multi_shot": True,
                "shot_type": "customize",
                "duration": 5,
                "multi_prompt": shots(3, 2),
            }
        ],
        [({"action": "text2video", "model": "kling-v3", "duration": 5}, "prompt")],
    ),
]

ACCEPTED = [(rule, body) for rule, good, _ in RULES for body in good]
REFUSED = [(rule, body, field) for rule, _, bad in RULES for body, field in bad]


def strip_none(body: dict[str, Any]) -> dict[str, Any]:
    """``generate_audio: None`` in a row means "not sent"."""
    return {k: v for k, v in body.items() if v is not None}
