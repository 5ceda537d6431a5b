"""Switchyard's events client: sends a product's events with a workspace's publishable key.

- Every call carries an idempotency key (generated unless given), and every retry of the call
  carries the same one, so a retry never stores an event twice.
- Retries, with exponential backoff and full jitter, follow network errors, timeouts, 429 (after
  its ``Retry-After``) and 5xx answers; other answers are final.
- Standard library only. ``AsyncSwitchyard`` offers the same calls to asyncio code; they run in a
  worker thread (``asyncio.to_thread``), so the event loop never blocks on the network.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

__all__ = [
    "Accepted",
    "AsyncSwitchyard",
    "BatchResult",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "Switchyard",
    "SwitchyardError",
]

#: The server's limits on one bulk request.
MAX_BATCH_EVENTS = 1000
MAX_BATCH_BYTES = 15 * 1024 * 1024

Event = Mapping[str, Any]
"""One event as ``POST /api/v1/events`` takes it: ``event`` (the name), and optionally ``payload``
(a dict), ``resource`` and ``resource_id``, ``occurred_at`` (a string or a datetime) and
``idempotency_key``."""


class SwitchyardError(Exception):
    """A refusal or failure, with the API's error code and message.

    ``status`` is the HTTP status, or 0 when no answer came; ``code`` is the API's stable code
    (``validation_failed``, ``unauthorized``, ...) or ``network`` / ``timeout``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Optional[List[Dict[str, str]]] = None,
        retry_after: Optional[int] = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.retry_after = retry_after
        self.attempts = attempts

    def __repr__(self) -> str:
        return f"SwitchyardError(status={self.status}, code={self.code!r}, message={self.message!r})"


@dataclass(frozen=True)
class Accepted:
    """What Switchyard answered for an accepted event. ``duplicate`` is true when the idempotency
    key matched an earlier event, whose id this then is."""

    id: str
    event: str
    workspace_id: str
    received_at: str
    status: str
    duplicate: bool


@dataclass
class BatchResult:
    """``results`` holds one dict per event, in the order given: ``index``, and ``id`` (with
    ``duplicate``) or ``error`` (``code``, ``message``, ``details``)."""

    accepted: int = 0
    rejected: int = 0
    results: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class _Answer:
    status: int
    body: Any
    retry_after: Optional[int]


def _normalise(event: Event) -> Dict[str, Any]:
    out = {k: v for k, v in dict(event).items() if v is not None}
    when = out.get("occurred_at")
    if isinstance(when, _dt.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        out["occurred_at"] = when.isoformat()
    return out


class Switchyard:
    """The synchronous client. Thread-safe: it keeps no state between calls."""

    def __init__(
        self,
        publishable_key: str,
        *,
        base_url: str = "http://127.0.0.1:8080",
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
    ) -> None:
        """``timeout`` is per attempt, in seconds; ``retries`` counts the tries after the first;
        each wait is random, up to ``backoff * 2**(n-1)`` seconds and at most ``max_backoff``
        (and at least the server's ``Retry-After``)."""
        if not publishable_key or not publishable_key.startswith("pk_"):
            raise ValueError("Switchyard needs a workspace's publishable key (pk_...)")
        self._key = publishable_key
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._retries = max(0, retries)
        self._backoff = backoff
        self._max_backoff = max_backoff

    def emit(self, event: Event, *, idempotency_key: Optional[str] = None) -> Accepted:
        """Sends one event; returns once Switchyard has stored it durably (or found it stored)."""
        body = _normalise(event)
        key = idempotency_key or body.pop("idempotency_key", None) or str(uuid.uuid4())
        body.pop("idempotency_key", None)
        answer = self._send("/api/v1/events", body, key)
        b = answer.body
        return Accepted(b["id"], b["event"], b["workspace_id"], b["received_at"], b["status"], answer.status == 200)

    def emit_batch(self, events: Sequence[Event]) -> BatchResult:
        """Sends many events in as many requests as the server's limits need (1,000 events and
        15 MiB each); each event gets its own idempotency key unless it has one, and retries
        reuse them. Results are in the order given, across requests."""
        keyed = []
        for e in events:
            item = _normalise(e)
            item.setdefault("idempotency_key", str(uuid.uuid4()))
            keyed.append(item)
        out = BatchResult()
        start = 0
        while start < len(keyed):
            end, size = start, 2
            while end < len(keyed) and end - start < MAX_BATCH_EVENTS:
                n = len(json.dumps(keyed[end])) + 1
                if end > start and size + n > MAX_BATCH_BYTES:
                    break
                size += n
                end += 1
            answer = self._send("/api/v1/events/bulk", keyed[start:end], None)
            out.accepted += answer.body["accepted"]
            out.rejected += answer.body["rejected"]
            for r in answer.body["results"]:
                out.results.append({**r, "index": r["index"] + start})
            start = end
        return out

    # -- one request, retried as the module says --

    def _send(self, path: str, body: Any, idempotency_key: Optional[str]) -> _Answer:
        data = json.dumps(body).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = self._attempt(path, data, idempotency_key)
            except SwitchyardError as e:  # no answer: network or timeout
                e.attempts = attempt
                failure = e
            else:
                if 200 <= answer.status < 300:
                    return answer
                failure = _error_from(answer, attempt)
                if answer.status != 429 and answer.status < 500:
                    raise failure
            if attempt > self._retries:
                raise failure
            ceiling = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
            wait = random.uniform(0, ceiling)
            if failure.retry_after is not None:
                wait = max(wait, float(failure.retry_after))
            time.sleep(wait)

    def _attempt(self, path: str, data: bytes, idempotency_key: Optional[str]) -> _Answer:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._key}", "User-Agent": "switchyard-events-python/0.1"}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(self._base + path, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return _answer(response.status, response.read(), response.headers.get("Retry-After"))
        except urllib.error.HTTPError as e:
            return _answer(e.code, e.read(), e.headers.get("Retry-After") if e.headers else None)
        except (socket.timeout, TimeoutError) as e:
            raise SwitchyardError(0, "timeout", f"no answer within {self._timeout} s") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise SwitchyardError(0, "timeout", f"no answer within {self._timeout} s") from e
            raise SwitchyardError(0, "network", f"Switchyard could not be reached: {e.reason}") from e
        except (http.client.HTTPException, ConnectionError, OSError) as e:
            raise SwitchyardError(0, "network", f"Switchyard could not be reached: {e}") from e


def _answer(status: int, raw: bytes, retry_after: Optional[str]) -> _Answer:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    seconds = int(retry_after) if retry_after and retry_after.strip().isdigit() else None
    return _Answer(status, body, seconds)


def _error_from(answer: _Answer, attempts: int) -> SwitchyardError:
    error = (answer.body or {}).get("error", {}) if isinstance(answer.body, dict) else {}
    return SwitchyardError(
        answer.status,
        error.get("code", f"http_{answer.status}"),
        error.get("message", f"Switchyard answered HTTP {answer.status}"),
        error.get("details"),
        answer.retry_after,
        attempts,
    )


class AsyncSwitchyard:
    """The same client for asyncio: each call runs in a worker thread, so the loop never blocks."""

    def __init__(self, publishable_key: str, **options: Union[str, float, int]) -> None:
        self._sync = Switchyard(publishable_key, **options)  # type: ignore[arg-type]

    async def emit(self, event: Event, *, idempotency_key: Optional[str] = None) -> Accepted:
        return await asyncio.to_thread(self._sync.emit, event, idempotency_key=idempotency_key)

    async def emit_batch(self, events: Sequence[Event]) -> BatchResult:
        return await asyncio.to_thread(self._sync.emit_batch, list(events))
