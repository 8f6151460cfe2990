"""The Python side of scripts/bench-sdk (prints JSON lines; the script computes the ratios).

1. emit: the same drafts the Rust bench emits (benches/sdk.rs), per-emit p50/p99 in µs,
   events/s from the first emit until the broker acknowledged the last, and how many spilled
   to the spool on the way;
2. overhead: a loop of real Ed25519 verifies (`cryptography`), each iteration timed, without
   and with one `emit` per verify (alternating blocks of 200), broker up and broker unreachable (events spool), p50/p99.
   With VIGIL_BENCH_CPUS=LOOP:OTHER only this part runs, the loop's thread alone on one CPU
   and the core's threads on the other (scripts/bench-sdk puts the stack there too).

Input: VIGIL_BENCH_TOPIC, VIGIL_BENCH_EVENTS, VIGIL_BENCH_LOOP, VIGIL_BENCH_KEY_FILE,
VIGIL_BENCH_SPOOL, VIGIL_BENCH_DEAD_BROKER and the stack's VIGIL_* addresses.
"""

from __future__ import annotations

import json
import os
import threading
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
        # A burst faster than signing spills to the spool (by design); the figure runs until
        # the broker acknowledged every event, spilled ones included.
        deadline = time.monotonic() + 120
        em.flush(120)
        while em.counters()["delivered"] < events and time.monotonic() < deadline:
            time.sleep(0.005)
        elapsed = (time.perf_counter_ns() - start) / 1e9
        counters = em.counters()
    assert counters["delivered"] == events, f"broker acknowledged {counters} within 120 s"
    costs.sort()
    return {"lang": "python", "events": events, "p50_us": pct(costs, 0.5),
            "p99_us": pct(costs, 0.99), "events_per_s": events / elapsed,
            "spilled": counters["spooled"]}


BLOCK = 200  # iterations per block; blocks without and with emit alternate


def verify_loops(iterations: int, em: vigil.Emitter) -> tuple[list[int], list[int]]:
    """The loop without and with one emit per verify, in alternating blocks, so the machine's
    noise (other tenants, the broker's pauses) falls on both alike."""
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    message = os.urandom(200)
    signature = key.sign(message)
    base: list[int] = []
    loaded: list[int] = []
    for block in range(max(iterations // BLOCK, 1)):
        for i in range(BLOCK):
            t = time.perf_counter_ns()
            public.verify(signature, message)
            base.append(time.perf_counter_ns() - t)
        for i in range(BLOCK):
            event = draft(block * BLOCK + i)  # the application's, as in the Rust loop
            t = time.perf_counter_ns()
            public.verify(signature, message)
            em.emit(event)
            loaded.append(time.perf_counter_ns() - t)
    base.sort()
    loaded.sort()
    return base, loaded


def pin(cpus: str) -> None:
    """`LOOP:OTHER` (VIGIL_BENCH_CPUS): this thread, the loop's, on CPU LOOP; every other
    thread of the process (the core's encoder, librdkafka's) on CPU OTHER."""
    loop_cpu, other_cpu = (int(c) for c in cpus.split(":"))
    me = threading.get_native_id()
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), {loop_cpu if int(tid) == me else other_cpu})
        except ProcessLookupError:
            pass  # the thread ended between the listing and now


def overhead(iterations: int, broker: str, tag: str, cpus: str | None) -> dict:
    with emitter(tag, bootstrap_servers=broker, delivery_timeout_ms=2000,
                 close_timeout_ms=2000) as em:
        if cpus:
            pin(cpus)
        verify_loops(iterations // 10, em)  # warm up
        base, loaded = verify_loops(iterations, em)
    if cpus:
        tag = f"{tag} pinned"
    return {"lang": "python", "overhead": tag, "iterations": iterations,
            "verify_p50_us": pct(base, 0.5), "verify_p99_us": pct(base, 0.99),
            "with_emit_p50_us": pct(loaded, 0.5), "with_emit_p99_us": pct(loaded, 0.99)}


def main() -> None:
    cpus = os.environ.get("VIGIL_BENCH_CPUS")
    if not cpus:
        print(json.dumps(emit_figures(int(os.environ["VIGIL_BENCH_EVENTS"]))), flush=True)
    iterations = int(os.environ["VIGIL_BENCH_LOOP"])
    for tag, broker in (("broker-up", os.environ["VIGIL_KAFKA_BOOTSTRAP"]),
                        ("broker-down", os.environ["VIGIL_BENCH_DEAD_BROKER"])):
        print(json.dumps(overhead(iterations, broker, tag, cpus)), flush=True)


if __name__ == "__main__":
    main()
