"""Fixtures of the Python SDK suite: the stack's addresses from VIGIL_* variables, fresh
topics, a signing key, and an independent reader that decodes with fastavro (schema fetched
from the registry by the id in each record's frame) and checks signatures with cryptography."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ROOT = Path(__file__).resolve().parents[3]


def _required(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        pytest.exit(f"{var} is not set: run `eval \"$(scripts/stack up)\"` first, or scripts/test", 2)
    return value


@pytest.fixture(scope="session")
def bootstrap() -> str:
    return _required("VIGIL_KAFKA_BOOTSTRAP")


@pytest.fixture(scope="session")
def registry_url() -> str:
    return _required("VIGIL_SCHEMA_REGISTRY_URL")


@pytest.fixture
def topic(bootstrap: str) -> str:
    name = f"py-sdk-{uuid.uuid4().hex}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)]).values():
        future.result(30)
    return name


@dataclass
class Key:
    pem_file: Path
    pem: str
    public: Ed25519PublicKey
    key_id: str


@pytest.fixture
def key(tmp_path: Path) -> Key:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "signing.pem"
    path.write_text(pem)
    return Key(path, pem, private.public_key(), f"py-key-{uuid.uuid4().hex[:8]}")


@dataclass
class Received:
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    event: dict


class Reader:
    """Reads a topic from the beginning and decodes every record independently."""

    def __init__(self, bootstrap: str, registry_url: str) -> None:
        self.bootstrap, self.registry_url = bootstrap, registry_url
        self._schemas: dict[int, object] = {}

    def schema(self, schema_id: int):
        if schema_id not in self._schemas:
            with urllib.request.urlopen(f"{self.registry_url}/schemas/ids/{schema_id}", timeout=10) as r:
                body = json.load(r)
            self._schemas[schema_id] = fastavro.parse_schema(json.loads(body["schema"]))
        return self._schemas[schema_id]

    def decode(self, value: bytes) -> dict:
        assert value[0] == 0, "Confluent magic byte"
        (schema_id,) = struct.unpack(">I", value[1:5])
        return fastavro.schemaless_reader(io.BytesIO(value[5:]), self.schema(schema_id))

    def read(self, topic: str, count: int, timeout: float = 60.0, settle: float = 2.0) -> list[Received]:
        """Reads until `count` records arrived and `settle` more seconds brought none (so a
        duplicate would be seen), or until `timeout`."""
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": f"py-sdk-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        })
        consumer.subscribe([topic])
        out: list[Received] = []
        deadline = time.monotonic() + timeout
        quiet_until = None
        try:
            while time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None or message.error():
                    if len(out) >= count:
                        quiet_until = quiet_until or time.monotonic() + settle
                        if time.monotonic() >= quiet_until:
                            break
                    continue
                headers = dict(message.headers() or [])
                out.append(Received(message.key(), message.value(), headers, self.decode(message.value())))
        finally:
            consumer.close()
        return out


@pytest.fixture(scope="session")
def reader(bootstrap: str, registry_url: str) -> Reader:
    return Reader(bootstrap, registry_url)


def verify(received: Received, public: Ed25519PublicKey) -> None:
    """Raises unless the record's signature is valid over its exact value bytes."""
    public.verify(received.headers["vigil-sig"], received.value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """A TCP forwarder on a fixed loopback port, started when the test says: until then the
    address refuses connections, as a broker that is down does."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.port = free_port()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                inbound, _ = self._listener.accept()
            except OSError:
                continue
            try:
                outbound = socket.create_connection(self.target, timeout=5)
            except OSError:
                inbound.close()
                continue
            for a, b in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
