"""Listings for operators, written once: the task filter as SQL and as a predicate (the
memory store), and the users query."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kling_gateway.domain.task import Task
from kling_gateway.storage.base import TaskFilter, UserInfo


def task_filter_sql(user_id: str | None, flt: TaskFilter) -> tuple[str, list[object]]:
    """The WHERE condition (over ``tasks t``) and its parameters; ``user_id`` None: all users."""
    where: list[str] = []
    params: list[object] = []
    # Times bound as floats: PostgreSQL's float8 column takes no int parameter.
    for clause, value in (
        ("t.user_id = ?", user_id),
        ("t.type = ?", flt.type),
        ("t.state = ?", flt.state),
        ("t.created_at >= ?", None if flt.created_at_min is None else float(flt.created_at_min)),
        ("t.created_at <= ?", None if flt.created_at_max is None else float(flt.created_at_max)),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    return " AND ".join(where) or "TRUE", params


def task_matches(task: Task, user_id: str | None, flt: TaskFilter) -> bool:
    """``task_filter_sql`` as a predicate."""
    return (
        (user_id is None or task.user_id == user_id)
        and (flt.type is None or task.type == flt.type)
        and (flt.state is None or task.state.value == flt.state)
        and (flt.created_at_min is None or task.created_at >= flt.created_at_min)
        and (flt.created_at_max is None or task.created_at <= flt.created_at_max)
    )


# Each user with the counts the operator's pages show; the per-user counts use the
# tasks_user_created index and a scan of credentials (an operator's listing, rare).
USERS_QUERY = (
    "SELECT u.id, u.name, u.created_at, "
    "(SELECT count(*) FROM credentials c WHERE c.user_id = u.id AND c.revoked_at IS NULL), "
    "(SELECT count(*) FROM tasks t WHERE t.user_id = u.id) "
    "FROM users u ORDER BY u.created_at, u.name"
)


def user_from_row(row: Sequence[Any]) -> UserInfo:
    return UserInfo(
        id=row[0], name=row[1], created_at=row[2], tokens=int(row[3]), tasks=int(row[4])
    )
