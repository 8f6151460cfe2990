#!/usr/bin/env python3
"""Readiness probes for scripts/stack (standard library only, no JVM start).

  probe.py kafka HOST:PORT[,HOST:PORT...]   Kafka Metadata request; ok once a broker is listed
  probe.py http URL [EXPECTED_BODY_PREFIX]  HTTP GET; ok on status 200 (and body prefix, if given)

Exit status 0 when the service answers as expected, 1 otherwise (reason on stderr).
"""

import base64
import socket
import struct
import sys
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT_S = 3.0
API_VERSIONS = 18
METADATA = 3


class ProbeError(Exception):
    """A service did not answer the way a ready service does."""


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed by peer")
        buf += chunk
    return bytes(buf)


def _kafka_call(sock, api_key, api_version, correlation_id, body):
    # Request header v1: api_key, api_version, correlation_id, client_id (nullable string).
    client_id = b"vigil-stack-probe"
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    if size < 4 or size > 64 * 1024 * 1024:
        raise ProbeError(f"implausible response size {size}")
    resp = _recv_exact(sock, size)
    (got_id,) = struct.unpack(">i", resp[:4])
    if got_id != correlation_id:
        raise ProbeError(f"correlation id {got_id} != {correlation_id}")
    return resp[4:]


class _Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, fmt):
        n = struct.calcsize(fmt)
        if self.pos + n > len(self.data):
            raise ProbeError("truncated kafka response")
        vals = struct.unpack(fmt, self.data[self.pos:self.pos + n])
        self.pos += n
        return vals[0] if len(vals) == 1 else vals

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        if self.pos + n > len(self.data):
            raise ProbeError("truncated kafka string")
        s = self.data[self.pos:self.pos + n].decode("utf-8", "replace")
        self.pos += n
        return s


def _metadata_version(api_versions_body):
    r = _Reader(api_versions_body)
    error = r.take(">h")
    if error != 0:
        raise ProbeError(f"ApiVersions error code {error}")
    count = r.take(">i")
    for _ in range(max(count, 0)):
        key, lo, hi = r.take(">hhh")
        if key == METADATA:
            # v4..v8 are the non-flexible versions whose layout is handled below.
            v = min(hi, 8)
            if v < max(lo, 4):
                raise ProbeError(f"no usable Metadata version in {lo}..{hi}")
            return v
    raise ProbeError("broker does not list the Metadata api")


def probe_kafka(bootstrap):
    last = None
    for hostport in filter(None, (s.strip() for s in bootstrap.split(","))):
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=TIMEOUT_S) as sock:
                sock.settimeout(TIMEOUT_S)
                version = _metadata_version(_kafka_call(sock, API_VERSIONS, 0, 1, b""))
                # topics: empty array (no topic metadata), allow_auto_topic_creation=false,
                # and from v8 the two include_*_authorized_operations flags.
                body = struct.pack(">i", 0) + b"\x00"
                if version >= 8:
                    body += b"\x00\x00"
                r = _Reader(_kafka_call(sock, METADATA, version, 2, body))
                r.take(">i")  # throttle_time_ms
                brokers = []
                for _ in range(max(r.take(">i"), 0)):
                    node = r.take(">i")
                    bhost = r.string()
                    bport = r.take(">i")
                    r.string()  # rack
                    brokers.append(f"{node}@{bhost}:{bport}")
                cluster_id = r.string()
                controller = r.take(">i")
                if not brokers:
                    raise ProbeError("metadata lists no available broker yet")
                print(f"cluster {cluster_id} controller {controller} brokers {' '.join(brokers)}")
                return
        except (OSError, ValueError, ProbeError) as e:
            last = f"{hostport}: {e}"
    raise ProbeError(last or "empty bootstrap list")


def probe_http(url, expected_prefix=None):
    parts = urllib.parse.urlsplit(url)
    headers = {}
    if parts.username is not None:
        # urllib ignores credentials in the URL; a registry behind basic auth needs them sent.
        user = urllib.parse.unquote(parts.username)
        pw = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            body = resp.read(4096)
            status = resp.status
    except urllib.error.HTTPError as e:
        raise ProbeError(f"{url}: HTTP {e.code}")
    except (OSError, ValueError) as e:
        raise ProbeError(f"{url}: {e}")
    if status != 200:
        raise ProbeError(f"{url}: HTTP {status}")
    if expected_prefix is not None and not body.startswith(expected_prefix.encode()):
        raise ProbeError(f"{url}: unexpected body {body[:80]!r}")


def main(argv):
    try:
        if len(argv) == 3 and argv[1] == "kafka":
            probe_kafka(argv[2])
        elif len(argv) in (3, 4) and argv[1] == "http":
            probe_http(argv[2], argv[3] if len(argv) == 4 else None)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except ProbeError as e:
        print(f"probe: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
