"""A `vigil demo` platform: a Python service that emits through the Python SDK (`vigil`).

Run by the demo as `python platform.py JOB`, with the SDK installed in that interpreter. JOB is
one JSON object:

    {"kind": "traffic", "service", "key_id", "host", "spool_dir", "topic",
     "platform_index", "start", "count", "message"?}
    {"kind": "trace", ..., "principal", "client_ip", "traceparent"?}

`traffic` sends `count` normal events (the demo's mix of logins, signature checks and
authorisations); `trace` sends one failed login in the trace `traceparent` names, or in a new
one. The signing key is the PEM text in VIGIL_DEMO_SIGNING_KEY; the broker and the registry
come from VIGIL_KAFKA_BOOTSTRAP and VIGIL_SCHEMA_REGISTRY_URL. The last stdout line is a JSON
report: events emitted, what close left in flight or spooled, and the traceparent handed on.
"""

from __future__ import annotations

import json
import sys

import vigil

ACTIVITIES = (
    ("authentication", "login"),
    ("signature_verification", "verify"),
    ("authorization", "authorize"),
)


def normal_event(job: dict, i: int) -> vigil.VerificationEvent:
    class_uid, activity = ACTIVITIES[i % 3]
    return {
        "class_uid": class_uid,
        "activity_name": activity,
        "status_id": "success",
        "subject": {
            "principal": f"user-{i % 23:02}",
            "key_id": job["key_id"],
            "client_ip": f"10.{job['platform_index'] + 1}.0.{i % 200 + 1}",
            "tenant": "acme-bank",
        },
        "message": job.get("message") or f"{activity} ok",
    }


def failed_login(job: dict) -> vigil.VerificationEvent:
    return {
        "class_uid": "authentication",
        "activity_name": "login",
        "status_id": "failure",
        "status_detail": "wrong one-time code",
        "subject": {
            "principal": job["principal"],
            "key_id": job["key_id"],
            "client_ip": job["client_ip"],
            "tenant": "acme-bank",
        },
        "message": f"login failed at {job['service']}",
    }


def main() -> int:
    job = json.loads(sys.argv[1])
    emitter = vigil.Emitter(
        service=job["service"],
        key_id=job["key_id"],
        host=job["host"],
        spool_dir=job["spool_dir"],
        topic=job["topic"],
        signing_key_env="VIGIL_DEMO_SIGNING_KEY",
        close_timeout_ms=5000,
    )
    emitted, handed_on = 0, None
    try:
        if job["kind"] == "traffic":
            for i in range(job["start"], job["start"] + job["count"]):
                emitter.emit(normal_event(job, i))
                emitted += 1
        elif job["kind"] == "trace":
            with vigil.continue_trace(job.get("traceparent")) as handed_on:
                emitter.emit(failed_login(job))
                emitted += 1
        else:
            raise SystemExit(f"unknown job kind {job['kind']!r}")
    finally:
        report = emitter.close()
    print(json.dumps({"emitted": emitted, "in_flight": report.in_flight,
                      "spooled": report.spooled, "traceparent": handed_on}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
