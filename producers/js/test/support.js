// Shared by the Node SDK suite: the stack's addresses from VIGIL_* variables, fresh topics, a
// signing key, and an independent reader (confluent-kafka through kafka_tool.py for the raw
// records, avsc with the schema the registry gives for each record's id, node:crypto for the
// signature), so nothing under test checks itself.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const avro = require('avsc');

const ROOT = path.resolve(__dirname, '../../..');

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run \`eval "$(scripts/stack up)"\` first, or scripts/test`);
  return value;
}

const bootstrap = () => required('VIGIL_KAFKA_BOOTSTRAP');
const registryUrl = () => required('VIGIL_SCHEMA_REGISTRY_URL');
// The Python with confluent-kafka (scripts/sdk-js passes the SDK venv's).
const python = () => process.env.VIGIL_SDK_PYTHON || 'python3';

function kafkaTool(...args) {
  bootstrap();
  return execFileSync(python(), [path.join(__dirname, 'kafka_tool.py'), ...args],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
}

async function freshTopic() {
  const name = `js-sdk-${crypto.randomUUID()}`;
  kafkaTool('create', name);
  return name;
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-js-'));
}

function signingKey(dir) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  const pemFile = path.join(dir, 'signing.pem');
  fs.writeFileSync(pemFile, pem);
  return { pem, pemFile, publicKey, keyId: `js-key-${crypto.randomBytes(4).toString('hex')}` };
}

const schemas = new Map();
async function decode(value) {
  if (value[0] !== 0) throw new Error('no Confluent magic byte');
  const id = value.readUInt32BE(1);
  if (!schemas.has(id)) {
    const response = await fetch(`${registryUrl()}/schemas/ids/${id}`);
    if (!response.ok) throw new Error(`registry answered ${response.status} for schema ${id}`);
    schemas.set(id, avro.Type.forSchema(JSON.parse((await response.json()).schema)));
  }
  return schemas.get(id).fromBuffer(value.subarray(5));
}

/** Reads `topic` from the start until `count` records came and 2 s more brought none. */
async function read(topic, count) {
  const out = [];
  for (const line of kafkaTool('read', topic, String(count)).split('\n').filter(Boolean)) {
    const raw = JSON.parse(line);
    const value = Buffer.from(raw.value, 'hex');
    const headers = Object.fromEntries(Object.entries(raw.headers).map(([k, v]) => [k, Buffer.from(v, 'hex')]));
    out.push({ key: Buffer.from(raw.key, 'hex'), value, headers, event: await decode(value) });
  }
  return out;
}

/** True when the record's signature is valid over its exact value bytes. */
function verifies(record, publicKey) {
  return crypto.verify(null, record.value, publicKey, record.headers['vigil-sig']);
}

function draft(i, extra = {}) {
  return {
    class_uid: 'authentication', activity_name: 'logon', status_id: 'failure',
    subject: { principal: `user-${i}` }, attributes: { seq: String(i) }, ...extra,
  };
}

/** A test's own directory, signing key and fresh topic. */
async function setup() {
  const dir = tempDir();
  return { dir, key: signingKey(dir), topic: await freshTopic() };
}

/** Emitter options for a test's setup: its key, topic and `<dir>/spool`. */
function options({ dir, key, topic }, extra = {}) {
  return {
    service: 'js-sdk-test', keyId: key.keyId, signingKeyFile: key.pemFile,
    spoolDir: path.join(dir, 'spool'), topic, ...extra,
  };
}

/** The `seq` attributes of what was read, in ascending order. */
function seqs(records) {
  return records.map((r) => Number(r.event.attributes.seq)).sort((a, b) => a - b);
}

/** 0, 1, ..., n - 1. */
const upTo = (n) => [...Array(n).keys()];

module.exports = { ROOT, bootstrap, registryUrl, setup, options, read, verifies, draft, seqs, upTo };
