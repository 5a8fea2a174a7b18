"""What a create may only name if it is the caller's own (docs/contract.md §6, §7): the
elements and voices of ``element_list`` / ``voice_list``, the video an ``extend`` continues
and the video a lip-sync's ``video_id`` names. Checked
before the task is stored, so a foreign or unknown id is a 400 and no quota is charged; a
foreign id reads exactly like an unknown one."""

from __future__ import annotations

import msgspec

from kling_gateway.domain.params import AssetReference, LipSyncParams, TaskParams, VideoParams
from kling_gateway.protocol.errors import BadRequest
from kling_gateway.storage.base import Store


async def resolve_owned(store: Store, user_id: str, params: TaskParams) -> TaskParams:
    """``params`` with each element and voice carrying its upstream id; a 400 for an id that
    is not the caller's."""
    if isinstance(params, LipSyncParams):
        account = await _video_account(store, user_id, params.video_id)
        return msgspec.structs.replace(params, video_account=account)
    if not isinstance(params, VideoParams):
        return params
    if params.action == "extend":
        account = await _video_account(store, user_id, params.video_id)
        params = msgspec.structs.replace(params, video_account=account)
    if not params.element_list and not params.voice_list:
        return params
    elements = await _owned(store, user_id, "element", "element_list", params.element_list)
    voices = await _owned(store, user_id, "voice", "voice_list", params.voice_list)
    _one_account([("element_list", "element_id", elements), ("voice_list", "voice_id", voices)])
    return msgspec.structs.replace(params, element_list=elements, voice_list=voices)


async def _own_video(store: Store, user_id: str, video_id: str | None) -> str:
    """The id of the caller's task that made ``video_id`` ("" for no ``video_id``)."""
    found = None if video_id is None else await store.find_user_video(user_id, video_id)
    if video_id is not None and found is None:
        raise BadRequest(f"field `video_id`: no finished video of yours has video_id {video_id!r}")
    return found or ""


async def _video_account(store: Store, user_id: str, video_id: str | None) -> str | None:
    """The upstream account that made the caller's ``video_id`` (None: no video named, or
    made where accounts are not tracked); a 400 for a video that is not the caller's."""
    if video_id is None:
        return None
    stored = await store.load_task(await _own_video(store, user_id, video_id))
    return None if stored is None else stored.account


def _one_account(lists: list[tuple[str, str, tuple[AssetReference, ...]]]) -> None:
    """Upstream ids belong to one Kling account, and the task runs on one: refs of two
    accounts cannot be combined (the task is pinned to theirs, storage/upstream.py). An
    extend names no elements or voices (its models take none), so its video's account is
    never a third."""
    first: str | None = None
    for field, key, refs in lists:
        for i, ref in enumerate(refs):
            if ref.account is None:
                continue
            if first is not None and ref.account != first:
                raise BadRequest(
                    f"field `{field}[{i}].{key}`: it lives on another upstream account than "
                    "the other elements and voices of this request"
                )
            first = ref.account


async def _owned(
    store: Store, user_id: str, kind: str, field: str, refs: tuple[AssetReference, ...]
) -> tuple[AssetReference, ...]:
    if not refs:
        return refs
    found = await store.find_user_assets(user_id, kind, sorted({r.id for r in refs}))
    for i, ref in enumerate(refs):
        if ref.id not in found:
            key = "element_id" if kind == "element" else "voice_id"
            raise BadRequest(f"field `{field}[{i}].{key}`: no {kind} of yours has id {ref.id!r}")
    return tuple(
        AssetReference(id=r.id, upstream_id=found[r.id].upstream_id, account=found[r.id].account)
        for r in refs
    )
