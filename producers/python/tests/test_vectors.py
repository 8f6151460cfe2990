"""The one core gives the canonical bytes through the Python binding, and the generated types
match the schema."""

import json
import subprocess
import sys

import pytest
import vigil
from conftest import ROOT

VECTORS = json.loads((ROOT / "schemas/testdata/vectors.json").read_text())


def test_sign_record_reproduces_the_canonical_vector_byte_for_byte():
    key, value, headers = vigil.sign_record(
        VECTORS["event"], VECTORS["signing_key_pem"], VECTORS["key_id"], VECTORS["schema_id"]
    )
    assert value.hex() == VECTORS["value_hex"]
    assert key.hex() == VECTORS["record_key_hex"]
    assert [(n, v.hex()) for n, v in headers] == [(h["name"], h["value_hex"]) for h in VECTORS["headers"]]


def test_a_malformed_event_raises_a_typed_error_naming_the_field():
    event = dict(VECTORS["event"], class_uid="nope")
    with pytest.raises(vigil.InvalidEventError, match="unknown variant `nope`"):
        vigil.sign_record(event, VECTORS["signing_key_pem"], VECTORS["key_id"], 1)
    with pytest.raises(vigil.InvalidEventError, match="RFC 3339"):
        vigil.sign_record(dict(VECTORS["event"], occurred_at="yesterday"), VECTORS["signing_key_pem"], "k", 1)


def test_a_bad_key_raises_without_echoing_it():
    secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXRleHQ=\n-----END PRIVATE KEY-----\n"
    with pytest.raises(vigil.SigningKeyError) as raised:
        vigil.sign_record(VECTORS["event"], secret, "k", 1)
    assert "c2VjcmV0" not in str(raised.value)
    assert issubclass(vigil.SigningKeyError, vigil.VigilError)


def test_generated_types_match_the_schema():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen-sdk-types"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_typed_dicts_name_every_schema_field():
    schema = json.loads((ROOT / "schemas/avro/verification_event.avsc").read_text())
    fields = {f["name"] for f in schema["fields"]}
    annotated = set(vigil.VerificationEvent.__required_keys__) | set(vigil.VerificationEvent.__optional_keys__)
    assert annotated == fields
    assert vigil.VerificationEvent.__required_keys__ == {"class_uid", "activity_name", "status_id"}


def test_any_mapping_is_read_like_a_dict():
    from types import MappingProxyType

    as_dict = vigil.sign_record(VECTORS["event"], VECTORS["signing_key_pem"], VECTORS["key_id"], 1)
    proxy = MappingProxyType(dict(VECTORS["event"], subject=MappingProxyType(VECTORS["event"]["subject"])))
    assert vigil.sign_record(proxy, VECTORS["signing_key_pem"], VECTORS["key_id"], 1) == as_dict


def test_what_is_not_an_event_dict_raises_invalid_event():
    for event in (
        "not an event",
        [1, 2],
        dict(VECTORS["event"], attributes={"n": object()}),
        dict(VECTORS["event"], attributes={1: "non-string key"}),
        dict(VECTORS["event"], occurred_at=True),
        dict(VECTORS["event"], activity_id=2**70),
        dict(VECTORS["event"], subject="not a record"),
    ):
        with pytest.raises(vigil.InvalidEventError):
            vigil.sign_record(event, VECTORS["signing_key_pem"], VECTORS["key_id"], 1)
