"""The Python side of scripts/bench-sdk (prints JSON lines; the script computes the ratios).

1. emit: the same drafts the Rust bench emits (benches/sdk.rs), per-emit p50/p99 in µs and
   events/s from the first emit until the broker acknowledged the last;
2. overhead: a loop of real Ed25519 verifies (`cryptography`), each iteration timed, without
   and with one `emit` per verify, broker up and broker unreachable (events spool), p50/p99.

Input: VIGIL_BENCH_TOPIC, VIGIL_BENCH_EVENTS, VIGIL_BENCH_LOOP, VIGIL_BENCH_KEY_FILE,
VIGIL_BENCH_SPOOL, VIGIL_BENCH_DEAD_BROKER and the stack's VIGIL_* addresses.
"""

from __future__ import annotations

import json
import os
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import vigil


def draft(i: int) -> dict:
    return {"class_uid": "authentication", "activity_name": "logon", "status_id": "failure",
            "subject": {"principal": f"svc-{i % 100}"}, "attributes": {"request": f"req-{i}"}}


def pct(sorted_ns: list[int], p: float) -> float:
    return sorted_ns[min(int(len(sorted_ns) * p), len(sorted_ns) - 1)] / 1000.0


def emitter(tag: str, **extra: object) -> vigil.Emitter:
    return vigil.Emitter(service=f"bench-python-{tag}", key_id="bench-key",
                         signing_key_file=os.environ["VIGIL_BENCH_KEY_FILE"],
                         spool_dir=os.path.join(os.environ["VIGIL_BENCH_SPOOL"], tag),
                         topic=os.environ["VIGIL_BENCH_TOPIC"], **extra)


def emit_figures(events: int) -> dict:
    drafts = [draft(i) for i in range(events)]
    costs = []
    with emitter("emit") as em:
        start = time.perf_counter_ns()
        for d in drafts:
            t = time.perf_counter_ns()
            em.emit(d)
            costs.append(time.perf_counter_ns() - t)
        report = em.flush(120)
        elapsed = (time.perf_counter_ns() - start) / 1e9
    assert report.in_flight == 0, "broker did not acknowledge every event"
    costs.sort()
    return {"lang": "python", "events": events, "p50_us": pct(costs, 0.5),
            "p99_us": pct(costs, 0.99), "events_per_s": events / elapsed,
            "spooled": report.spooled}


def verify_loop(iterations: int, em: vigil.Emitter | None) -> list[int]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    message = os.urandom(200)
    signature = key.sign(message)
    costs = []
    for i in range(iterations):
        t = time.perf_counter_ns()
        public.verify(signature, message)
        if em is not None:
            em.emit(draft(i))
        costs.append(time.perf_counter_ns() - t)
    costs.sort()
    return costs


def overhead(iterations: int, broker: str, tag: str) -> dict:
    verify_loop(iterations // 10, None)  # warm up
    base = verify_loop(iterations, None)
    with emitter(tag, bootstrap_servers=broker, delivery_timeout_ms=2000,
                 close_timeout_ms=2000) as em:
        loaded = verify_loop(iterations, em)
    return {"lang": "python", "overhead": tag, "iterations": iterations,
            "verify_p50_us": pct(base, 0.5), "verify_p99_us": pct(base, 0.99),
            "with_emit_p50_us": pct(loaded, 0.5), "with_emit_p99_us": pct(loaded, 0.99)}


def main() -> None:
    print(json.dumps(emit_figures(int(os.environ["VIGIL_BENCH_EVENTS"]))), flush=True)
    iterations = int(os.environ["VIGIL_BENCH_LOOP"])
    print(json.dumps(overhead(iterations, os.environ["VIGIL_KAFKA_BOOTSTRAP"], "broker-up")),
          flush=True)
    print(json.dumps(overhead(iterations, os.environ["VIGIL_BENCH_DEAD_BROKER"], "broker-down")),
          flush=True)


if __name__ == "__main__":
    main()
