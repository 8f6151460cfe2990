"""The Python SDK against the real broker and registry: emitted events read back by an
independent decoder with valid signatures; an outage bridged by the spool; a process killed
with spooled events delivered once by the next; a forked child with a spool of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import vigil
from conftest import Proxy, verify


def draft(i: int, **extra) -> dict:
    return {
        "class_uid": "authentication",
        "activity_name": "logon",
        "status_id": "failure",
        "subject": {"principal": f"user-{i}"},
        "attributes": {"seq": str(i)},
        **extra,
    }


def options(key, topic, tmp_path, **extra) -> dict:
    return dict(
        service="py-sdk-test",
        key_id=key.key_id,
        signing_key_file=key.pem_file,
        spool_dir=tmp_path / "spool",
        topic=topic,
        **extra,
    )


def test_emitted_events_arrive_signed_complete_and_in_the_callers_trace(key, topic, tmp_path, reader):
    with vigil.Emitter(**options(key, topic, tmp_path)) as emitter:
        with vigil.continue_trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") as handed_on:
            for i in range(20):
                emitter.emit(draft(i))
            assert vigil.current_traceparent() == handed_on
        emitter.emit(draft(20, occurred_at="2026-12-01T10:00:00Z"))
        report = emitter.flush(30)
        assert (report.in_flight, report.spooled) == (0, 0)
        assert emitter.counters()["delivered"] == 21
        assert "vigil_producer_events_emitted_total 21" in emitter.metrics_text()
    got = reader.read(topic, 21)
    assert len(got) == 21
    seqs = sorted(int(r.event["attributes"]["seq"]) for r in got)
    assert seqs == list(range(21))
    for r in got:
        verify(r, key.public)
        assert r.headers["vigil-key-id"].decode() == key.key_id
        assert r.event["producer"]["platform"] == "python"
        assert r.event["producer"]["service"] == "py-sdk-test"
        assert r.event["producer"]["sdk_version"] == vigil.__version__
        assert len(r.event["nonce"]) == 32
    traced = [r for r in got if r.event["attributes"]["seq"] != "20"]
    assert {r.event["trace"]["trace_id"] for r in traced} == {"4bf92f3577b34da6a3ce929d0e0e4736"}
    assert {r.event["trace"]["parent_span_id"] for r in traced} == {"00f067aa0ba902b7"}
    assert len({r.event["trace"]["span_id"] for r in traced}) == 20
    last = next(r for r in got if r.event["attributes"]["seq"] == "20")
    assert last.event["trace"]["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736"


def test_bad_options_and_events_raise_typed_errors(key, topic, tmp_path):
    with pytest.raises(vigil.ConfigError, match="colour"):
        vigil.Emitter(**options(key, topic, tmp_path), colour="red")
    with pytest.raises(vigil.SigningKeyError, match="VIGIL_TEST_UNSET"):
        vigil.Emitter(service="s", key_id="k", signing_key_env="VIGIL_TEST_UNSET", spool_dir=tmp_path / "s2")
    with vigil.Emitter(**options(key, topic, tmp_path)) as emitter:
        with pytest.raises(vigil.InvalidEventError):
            emitter.emit({"class_uid": "authentication"})
    with pytest.raises(vigil.ClosedError):
        emitter.emit(draft(0))


def test_signing_key_from_an_environment_variable(key, topic, tmp_path, reader, monkeypatch):
    monkeypatch.setenv("VIGIL_TEST_SIGNING_KEY", key.pem)
    opts = options(key, topic, tmp_path)
    del opts["signing_key_file"]
    with vigil.Emitter(signing_key_env="VIGIL_TEST_SIGNING_KEY", **opts) as emitter:
        emitter.emit(draft(1))
    (r,) = reader.read(topic, 1)
    verify(r, key.public)


def test_an_outage_is_bridged_by_the_spool_and_every_event_arrives_once(key, topic, tmp_path, reader, bootstrap):
    proxy = Proxy(bootstrap)  # refuses connections until started: the broker is down
    try:
        with vigil.Emitter(**options(key, topic, tmp_path, delivery_timeout_ms=2000),
                           bootstrap_servers=proxy.address) as emitter:
            for i in range(50):
                emitter.emit(draft(i))
            deadline = time.monotonic() + 30
            while emitter.counters()["spooled"] < 50 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert emitter.counters()["spooled"] == 50, emitter.counters()
            proxy.start()
            deadline = time.monotonic() + 60
            while emitter.counters()["delivered"] < 50 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert emitter.counters()["delivered"] == 50, emitter.counters()
            assert emitter.counters()["dropped"] == 0
    finally:
        proxy.stop()
    got = reader.read(topic, 50)
    assert sorted(int(r.event["attributes"]["seq"]) for r in got) == list(range(50))


CHILD = textwrap.dedent(
    """
    import sys, time, vigil
    key_file, key_id, spool, topic, dead = sys.argv[1:6]
    emitter = vigil.Emitter(service="py-kill", key_id=key_id, signing_key_file=key_file,
                            spool_dir=spool, topic=topic, bootstrap_servers=dead,
                            spool_fsync="always", delivery_timeout_ms=1000)
    for i in range(40):
        emitter.emit({"class_uid": "authentication", "activity_name": "logon",
                      "status_id": "success", "attributes": {"seq": str(i)}})
    while emitter.counters()["spooled"] < 40:
        time.sleep(0.05)
    print("spooled", flush=True)
    time.sleep(120)
    """
)


def test_a_process_killed_with_spooled_events_leaves_them_to_the_next_one(key, topic, tmp_path, reader):
    spool = tmp_path / "spool"
    dead = f"127.0.0.1:{Proxy('127.0.0.1:1').port}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(key.pem_file), key.key_id, str(spool), topic, dead],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "spooled", f"child said {line!r}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    with vigil.Emitter(**options(key, topic, tmp_path)) as emitter:
        deadline = time.monotonic() + 60
        while emitter.counters()["delivered"] < 40 and time.monotonic() < deadline:
            time.sleep(0.2)
        report = emitter.close()
    assert report.spooled == 0
    got = reader.read(topic, 40)
    assert sorted(int(r.event["attributes"]["seq"]) for r in got) == list(range(40))
    assert len({r.event["event_id"] for r in got}) == 40


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_emits_through_its_own_spool_without_touching_the_parents(key, topic, tmp_path, reader):
    emitter = vigil.Emitter(**options(key, topic, tmp_path))
    emitter.emit(draft(0))
    emitter.flush(30)
    pid = os.fork()
    if pid == 0:  # the child: its own emitter and spool, started on first use
        code = 1
        try:
            for i in range(100, 110):
                emitter.emit(draft(i))
            report = emitter.close()
            code = 0 if report.spooled == 0 and report.in_flight == 0 else 3
        finally:
            os._exit(code)
    for i in range(1, 10):
        emitter.emit(draft(i))
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    report = emitter.close()
    assert (report.in_flight, report.spooled) == (0, 0)
    assert (tmp_path / f"spool.child-{pid}").is_dir()
    got = reader.read(topic, 20)
    seqs = sorted(int(r.event["attributes"]["seq"]) for r in got)
    assert seqs == list(range(10)) + list(range(100, 110))
    for r in got:
        verify(r, key.public)
