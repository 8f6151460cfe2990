"""Vigil producer SDK for Python.

    import vigil

    with vigil.Emitter(service="payments-api", key_id="payments-1",
                       signing_key_file="/etc/vigil/signing.pem",
                       spool_dir="/var/lib/vigil/spool") as emitter:
        emitter.emit({"class_uid": "authentication", "activity_name": "logon",
                      "status_id": "failure", "subject": {"principal": "alice"}})

`emit` never waits for the broker: it completes the event (event_id, nonce, occurred_at, the
producer block), queues it, and returns; the Rust core signs and sends it on its own thread,
and keeps it in a crash-safe disk spool while the broker is unreachable. Signing, encoding and
spooling are the Rust SDK's (`vigil-producer`), so the bytes are the same in every language.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import json
import os
import secrets
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from . import _native
from ._native import (
    ClosedError,
    ConfigError,
    DroppedError,
    EncodeError,
    InvalidEventError,
    SchemaRegistryError,
    SigningKeyError,
    StartError,
    VigilError,
)
from .events import Trace, VerificationEvent

__all__ = [
    "Emitter",
    "FlushReport",
    "VerificationEvent",
    "Trace",
    "VigilError",
    "ConfigError",
    "SigningKeyError",
    "SchemaRegistryError",
    "StartError",
    "InvalidEventError",
    "EncodeError",
    "ClosedError",
    "DroppedError",
    "continue_trace",
    "current_traceparent",
    "sign_record",
]

__version__: str = _native.SDK_VERSION

# Emitter tuning keys passed through to the core's EmitterConfig (same names as the Rust SDK).
_EMITTER_KEYS = (
    "topic",
    "queue_capacity",
    "delivery_timeout_ms",
    "spool_max_bytes",
    "spool_segment_bytes",
    "spool_fsync",
    "drain_batch_records",
    "close_timeout_ms",
)


@dataclass(frozen=True)
class FlushReport:
    """What a flush or close left behind."""

    in_flight: int
    """Records librdkafka still held when the timeout ran out."""
    spooled: int
    """Records in the disk spool, delivered by this or the next emitter on the directory."""


# --- trace context -------------------------------------------------------------------------

_trace: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "vigil_trace", default=None
)


def _parse_traceparent(value: str) -> tuple[str, str]:
    parts = value.strip().split("-")
    if (
        len(parts) != 4
        or len(parts[0]) != 2
        or len(parts[1]) != 32
        or len(parts[2]) != 16
        or parts[1] == "0" * 32
        or parts[2] == "0" * 16
    ):
        raise ValueError(f"not a W3C traceparent: {value!r}")
    int(parts[1], 16), int(parts[2], 16)  # hex, or ValueError
    return parts[1].lower(), parts[2].lower()


@contextlib.contextmanager
def continue_trace(traceparent: str | None = None) -> Iterator[str]:
    """Runs the block in a trace: the one `traceparent` names (from an incoming request), or a
    new one. Events emitted inside carry its trace id with a span of their own whose parent is
    the incoming span. Yields the traceparent to hand on to the next service."""
    if traceparent is None:
        context = (secrets.token_hex(16), secrets.token_hex(8))
    else:
        context = _parse_traceparent(traceparent)
    token = _trace.set(context)
    try:
        yield f"00-{context[0]}-{context[1]}-01"
    finally:
        _trace.reset(token)


# Looked up once: an import attempt per event costs more than the emit itself.
try:
    from opentelemetry import trace as _otel  # type: ignore[import-not-found]
except ImportError:
    _otel = None


def _otel_context() -> tuple[str, str] | None:
    if _otel is None:
        return None
    span = _otel.get_current_span().get_span_context()
    if not span.is_valid:
        return None
    return f"{span.trace_id:032x}", f"{span.span_id:016x}"


def _current_context() -> tuple[str, str] | None:
    return _otel_context() or _trace.get()


def current_traceparent() -> str | None:
    """The W3C traceparent of the current context (OpenTelemetry's when a span is active,
    else the SDK's own from `continue_trace`), or None outside any trace."""
    context = _current_context()
    return None if context is None else f"00-{context[0]}-{context[1]}-01"


# --- the emitter ---------------------------------------------------------------------------

_live: "weakref.WeakSet[Emitter]" = weakref.WeakSet()
# Forks this process has been through (counted in the child by `_after_fork_in_child`): an
# emitter started in another generation belongs to an ancestor. A compare, where `os.getpid()`
# would be a system call on every emit.
_forks = 0
_live_lock = threading.Lock()


class Emitter:
    """Emits signed events to Kafka without ever blocking the caller on the network.

    The signing key comes from `signing_key_file` (PKCS#8 PEM) or from the environment variable
    named by `signing_key_env`; it is never logged. Broker and registry addresses default to
    `VIGIL_KAFKA_BOOTSTRAP` and `VIGIL_SCHEMA_REGISTRY_URL`. Further keyword arguments are the
    Rust SDK's emitter settings (`topic`, `queue_capacity`, `spool_max_bytes`, `spool_fsync`,
    ...). One emitter per spool directory; a spool a dead process left is delivered by the next
    emitter on the directory. A forked child gets an emitter of its own, with its own spool
    (`<spool_dir>.child-<pid>`), the first time it emits. Open emitters are closed at exit.
    """

    def __init__(
        self,
        *,
        service: str,
        key_id: str,
        spool_dir: str | os.PathLike[str],
        signing_key_file: str | os.PathLike[str] | None = None,
        signing_key_env: str | None = None,
        bootstrap_servers: str | None = None,
        schema_registry_url: str | None = None,
        host: str | None = None,
        **emitter: object,
    ) -> None:
        unknown = sorted(set(emitter) - set(_EMITTER_KEYS))
        if unknown:
            raise ConfigError(f"unknown emitter option(s): {', '.join(unknown)}")
        self._spool_dir = Path(spool_dir)
        self._options = {
            "service": service,
            "key_id": key_id,
            "signing_key_file": None if signing_key_file is None else os.fspath(signing_key_file),
            "signing_key_env": signing_key_env,
            "bootstrap_servers": bootstrap_servers,
            "schema_registry_url": schema_registry_url,
            "host": host,
            "emitter": {"spool_dir": os.fspath(spool_dir), **emitter},
        }
        self._forks = _forks
        self._native: _native.NativeEmitter | None = self._start(self._options)
        self._closed = False
        with _live_lock:
            _live.add(self)

    @staticmethod
    def _start(options: dict) -> _native.NativeEmitter:
        return _native.NativeEmitter(json.dumps(options), __version__)

    def _current(self) -> _native.NativeEmitter:
        if self._closed:
            raise ClosedError("emitter is closed")
        if self._forks != _forks:
            # A forked child: the parent's emitter is not ours to use; start our own spool.
            options = json.loads(json.dumps(self._options))
            options["emitter"]["spool_dir"] = f"{self._spool_dir}.child-{os.getpid()}"
            self._native = self._start(options)
            self._forks = _forks
        assert self._native is not None
        return self._native

    def emit(self, event: VerificationEvent | Mapping) -> None:
        """Completes, signs and queues `event` (the Avro field names; see `vigil.events`).
        Returns at once; raises `InvalidEventError` for a malformed event, `ClosedError` after
        `close`, `DroppedError` when the queue and the spool are both full."""
        native = self._current()
        # The core gives an event without a trace a span of its own in the current trace, or a
        # fresh trace outside any.
        context = _current_context()
        # The dict is read straight into the core's typed draft: no JSON in between.
        if context is None:
            native.emit(event)
        else:
            native.emit(event, context[0], context[1])

    def flush(self, timeout: float = 10.0) -> FlushReport:
        """Waits up to `timeout` seconds until every event so far is acknowledged by the
        broker or safe in the spool."""
        return FlushReport(*self._current().flush(timeout))

    def close(self) -> FlushReport:
        """Stops accepting events, flushes, and spools what the broker did not take.
        Idempotent."""
        if self._closed:
            return FlushReport(0, 0)
        self._closed = True
        if self._native is None or self._forks != _forks:
            return FlushReport(0, 0)
        return FlushReport(*self._native.close())

    def metrics_text(self) -> str:
        """The emitter's metrics in the Prometheus text format (the Rust SDK's names)."""
        return self._current().metrics_text()

    def counters(self) -> dict[str, int]:
        """`emitted`, `delivered`, `spooled` and `dropped` so far."""
        emitted, delivered, spooled, dropped = self._current().counters()
        return {"emitted": emitted, "delivered": delivered, "spooled": spooled,
                "dropped": dropped}

    def __enter__(self) -> "Emitter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sign_record(
    event: VerificationEvent | Mapping, signing_key_pem: str, key_id: str, schema_id: int
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Signs `event` as the emitter would, without sending it: `(key, value, headers)`."""
    return _native.sign_record(event, signing_key_pem, key_id, schema_id)


def _close_all() -> None:
    with _live_lock:
        emitters = list(_live)
    for emitter in emitters:
        with contextlib.suppress(VigilError):
            emitter.close()


def _after_fork_in_child() -> None:
    # A thread of the parent may have held the lock at the fork: the child starts with a free
    # one. Each emitter notices the new generation itself and starts its own core on first use.
    global _live_lock, _forks
    _live_lock = threading.Lock()
    _forks += 1


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)
