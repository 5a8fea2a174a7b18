"""Command-line words argparse would misread.

argparse takes any word that begins with ``-`` for an option, so ``--secret-key -AbC...=`` is
refused as "expected one argument": a url-safe base64 key (the server key's format) begins
with ``-`` one time in 64, and so may a token, a password or a negative number. Such a word
after a flag that takes one value is that flag's value: it is joined to it (``--flag=VALUE``),
the form argparse reads whatever the value begins with.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence


def join_dash_values(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with each ``--flag -VALUE`` written ``--flag=-VALUE``, where ``--flag`` (of
    any subcommand) takes one value and ``-VALUE`` is not itself a flag; untouched after
    ``--``."""
    takes_value, flags = _flags(parser)
    joined: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            joined.extend(argv[i:])
            break
        value = argv[i + 1] if i + 1 < len(argv) else None
        if word in takes_value and value and value.startswith("-") and value not in flags:
            joined.append(f"{word}={value}")
            i += 2
            continue
        joined.append(word)
        i += 1
    return joined


def _flags(parser: argparse.ArgumentParser) -> tuple[set[str], set[str]]:
    """The flags that take one value, and every flag, of ``parser`` and its subcommands."""
    takes_value: set[str] = set()
    flags: set[str] = set()
    one_value = (argparse._StoreAction, argparse._AppendAction)
    for action in _actions(parser):
        flags.update(action.option_strings)
        if action.nargs is None and isinstance(action, one_value):
            takes_value.update(action.option_strings)
    return takes_value, flags


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
