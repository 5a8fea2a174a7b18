"""protocol/enums.py is the one list: the SDK's types and the CLI's choices are its values."""

from __future__ import annotations

import argparse

import pytest

from kling_gateway.cli import build_parser
from kling_gateway.client import types
from kling_gateway.protocol import enums


def _videos_create() -> argparse.ArgumentParser:
    parser = build_parser()
    return _sub(_sub(parser, "videos"), "create")


def _sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise AssertionError(f"no subcommand {name}")


@pytest.mark.parametrize(
    ("flag", "values"),
    [("--action", enums.ACTIONS), ("--mode", enums.MODES), ("--aspect-ratio", enums.ASPECT_RATIOS)],
)
def test_the_cli_choices_are_protocols(flag: str, values: tuple[str, ...]) -> None:
    (option,) = [a for a in _videos_create()._actions if flag in a.option_strings]
    assert option.choices is values


def test_the_cli_takes_any_model_and_names_protocols() -> None:
    # Free text (the hosted service may know newer models), the gateway's named in the help.
    (option,) = [a for a in _videos_create()._actions if "--model" in a.option_strings]
    assert option.choices is None
    assert all(model in (option.help or "") for model in enums.MODELS)


def test_the_sdk_types_are_protocols() -> None:
    assert types.VideoAction is enums.VideoAction
    assert types.VideoModel is enums.VideoModel
    assert types.VideoMode is enums.VideoMode
    assert types.AspectRatio is enums.AspectRatio
    assert types.CameraType is enums.CameraType


def test_the_derived_sets_are_subsets() -> None:
    assert set(enums.MODELS) >= enums.AUDIO_MODELS >= enums.V3_MODELS
    assert enums.AUDIO_MODELS >= enums.AUDIO_PRO_ONLY_MODELS
    assert enums.TASK_ACTIONS[0] == "retrieve"  # the action of a body that names none (§1)
    low, high = enums.V3_DURATION_RANGE
    assert low <= min(enums.DURATIONS) and max(enums.DURATIONS) <= high
