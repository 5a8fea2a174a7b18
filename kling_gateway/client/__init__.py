"""The Python SDK of kling-gateway; it speaks to the hosted Kling service and to this gateway.

```python
from kling_gateway.client import Client

with Client("https://api.acedata.cloud", token="...") as client:
    task = client.videos.create("a mug on marble", async_=True)
    record = client.tasks.wait(task["task_id"])
```
"""

from __future__ import annotations

from kling_gateway.client._async import AsyncClient
from kling_gateway.client._base import (
    DEFAULT_BASE_URL,
    LONG_POLL_HEADER,
    RETRY_STATUSES,
    task_outcome,
    task_state,
)
from kling_gateway.client._sync import Client
from kling_gateway.client.errors import (
    ApiError,
    ApiNotImplementedError,
    BadGatewayError,
    BadRequestError,
    ConflictError,
    DisabledError,
    ForbiddenError,
    GatewayTimeoutError,
    InvalidTokenError,
    KlingError,
    NoApiError,
    NotFoundError,
    RateLimitError,
    ServiceUnavailableError,
    StorageFullError,
    TaskNotFoundError,
    TokenExpiredError,
    TokenMismatchedError,
    TransportError,
    UnknownError,
    UsedUpError,
    WaitTimeoutError,
)
from kling_gateway.client.types import Outcome, Record

__all__ = [
    "DEFAULT_BASE_URL",
    "LONG_POLL_HEADER",
    "RETRY_STATUSES",
    "ApiError",
    "ApiNotImplementedError",
    "AsyncClient",
    "BadGatewayError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "DisabledError",
    "ForbiddenError",
    "GatewayTimeoutError",
    "InvalidTokenError",
    "KlingError",
    "NoApiError",
    "NotFoundError",
    "Outcome",
    "RateLimitError",
    "Record",
    "ServiceUnavailableError",
    "StorageFullError",
    "TaskNotFoundError",
    "TokenExpiredError",
    "TokenMismatchedError",
    "TransportError",
    "UnknownError",
    "UsedUpError",
    "WaitTimeoutError",
    "task_outcome",
    "task_state",
]
