// The one core gives the canonical bytes through the Node binding, and the generated types
// match the schema.
'use strict';

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const test = require('node:test');
const vigil = require('..');
const { ROOT } = require('./support');

const VECTORS = JSON.parse(fs.readFileSync(path.join(ROOT, 'schemas/testdata/vectors.json'), 'utf8'));

test('signRecord reproduces the canonical vector byte for byte', () => {
  const r = vigil.signRecord(VECTORS.event, VECTORS.signing_key_pem, VECTORS.key_id, VECTORS.schema_id);
  assert.equal(r.value.toString('hex'), VECTORS.value_hex);
  assert.equal(r.key.toString('hex'), VECTORS.record_key_hex);
  assert.deepEqual(
    r.headers.map((h) => [h.name, h.value.toString('hex')]),
    VECTORS.headers.map((h) => [h.name, h.value_hex]),
  );
});

test('a malformed event throws a VigilError with a code, naming the field', () => {
  assert.throws(
    () => vigil.signRecord({ ...VECTORS.event, class_uid: 'nope' }, VECTORS.signing_key_pem, VECTORS.key_id, 1),
    (e) => e instanceof vigil.VigilError && e.code === 'ERR_VIGIL_INVALID_EVENT' && /unknown variant `nope`/.test(e.message),
  );
  assert.throws(
    () => vigil.signRecord({ ...VECTORS.event, occurred_at: 'yesterday' }, VECTORS.signing_key_pem, 'k', 1),
    (e) => e.code === 'ERR_VIGIL_INVALID_EVENT' && /RFC 3339/.test(e.message),
  );
});

test('a bad key throws without echoing it', () => {
  const secret = '-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXRleHQ=\n-----END PRIVATE KEY-----\n';
  assert.throws(
    () => vigil.signRecord(VECTORS.event, secret, 'k', 1),
    (e) => e.code === 'ERR_VIGIL_SIGNING_KEY' && !e.message.includes('c2VjcmV0'),
  );
});

test('the generated event types match the schema', () => {
  const result = spawnSync('python3', [path.join(ROOT, 'scripts/gen-sdk-types'), '--check'], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
});
