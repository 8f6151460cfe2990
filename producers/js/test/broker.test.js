// The Node SDK against the real broker and registry: emitted events read back by an
// independent decoder with valid signatures and the caller's trace; typed errors; a key from
// the environment; a process that ends without close delivers through its exit hooks.
'use strict';

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const test = require('node:test');
const vigil = require('..');
const { setup, options, read, verifies, draft, seqs, upTo } = require('./support');

test('emitted events arrive signed, complete and in the caller\'s trace', async () => {
  const { dir, key, topic } = await setup();
  const emitter = await vigil.Emitter.start(options({ dir, key, topic }));
  const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  await vigil.continueTrace(incoming, async (handOn) => {
    assert.equal(handOn, incoming);
    for (let i = 0; i < 10; i++) emitter.emit(draft(i));
    await new Promise((r) => setTimeout(r, 10)); // the context survives an await
    for (let i = 10; i < 20; i++) emitter.emit(draft(i));
    assert.equal(vigil.currentTraceparent(), incoming);
  });
  assert.equal(vigil.currentTraceparent(), null);
  emitter.emit(draft(20, { occurred_at: '2026-12-01T10:00:00Z' }));
  const report = await emitter.flush(30000);
  assert.deepEqual(report, { inFlight: 0, spooled: 0 });
  assert.equal(emitter.counters().delivered, 21);
  assert.match(emitter.metricsText(), /vigil_producer_events_emitted_total 21/);
  await emitter.close();

  const got = await read(topic, 21);
  assert.equal(got.length, 21);
  assert.deepEqual(seqs(got), upTo(21));
  for (const r of got) {
    assert.ok(verifies(r, key.publicKey), 'signature over the value bytes');
    assert.equal(r.headers['vigil-key-id'].toString(), key.keyId);
    assert.equal(r.event.producer.platform, 'js');
    assert.equal(r.event.producer.service, 'js-sdk-test');
    assert.equal(r.event.producer.sdk_version, vigil.SDK_VERSION);
    assert.equal(r.event.nonce.length, 32);
  }
  const traced = got.filter((r) => r.event.attributes.seq !== '20');
  assert.deepEqual([...new Set(traced.map((r) => r.event.trace.trace_id))], ['4bf92f3577b34da6a3ce929d0e0e4736']);
  assert.deepEqual([...new Set(traced.map((r) => r.event.trace.parent_span_id))], ['00f067aa0ba902b7']);
  assert.equal(new Set(traced.map((r) => r.event.trace.span_id)).size, 20);
  const last = got.find((r) => r.event.attributes.seq === '20');
  assert.notEqual(last.event.trace.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
});

test('an active OpenTelemetry span gives the trace', async () => {
  const otel = require('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
  otel.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const span = otel.trace.wrapSpanContext({
    traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1,
  });
  otel.context.with(otel.trace.setSpan(otel.context.active(), span), () => {
    assert.equal(vigil.currentTraceparent(), '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });
  otel.context.disable();
});

test('bad options and events reject or throw with a code', async () => {
  const { dir, key, topic } = await setup();
  await assert.rejects(vigil.Emitter.start({ ...options({ dir, key, topic }), colour: 'red' }),
    (e) => e instanceof vigil.VigilError && e.code === 'ERR_VIGIL_CONFIG' && /colour/.test(e.message));
  await assert.rejects(
    vigil.Emitter.start({ service: 's', keyId: 'k', signingKeyEnv: 'VIGIL_TEST_UNSET', spoolDir: path.join(dir, 's2') }),
    (e) => e.code === 'ERR_VIGIL_SIGNING_KEY' && /VIGIL_TEST_UNSET/.test(e.message));
  const emitter = await vigil.Emitter.start(options({ dir, key, topic }));
  assert.throws(() => emitter.emit({ class_uid: 'authentication' }), (e) => e.code === 'ERR_VIGIL_INVALID_EVENT');
  assert.throws(() => emitter.emit('text'), (e) => e.code === 'ERR_VIGIL_INVALID_EVENT');
  await emitter.close();
  assert.throws(() => emitter.emit(draft(0)), (e) => e.code === 'ERR_VIGIL_CLOSED');
  await assert.rejects(emitter.flush(), (e) => e.code === 'ERR_VIGIL_CLOSED'); // a Promise, not a throw
  assert.deepEqual(await emitter.close(), { inFlight: 0, spooled: 0 });
});

// A script that emits and then ends without close: by running dry (beforeExit) or by
// process.exit() (exit). Both hooks close synchronously, so every event is delivered.
const CHILD = `
const vigil = require(process.argv[1]);
const [keyFile, keyId, spool, topic, how] = process.argv.slice(2);
vigil.Emitter.start({ service: 'js-exit', keyId, signingKeyFile: keyFile, spoolDir: spool, topic })
  .then((emitter) => {
    for (let i = 0; i < 15; i++) {
      emitter.emit({ class_uid: 'authentication', activity_name: 'logon', status_id: 'success',
                     attributes: { seq: String(i) } });
    }
    if (how === 'exit') process.exit(0);
  });
`;

for (const how of ['beforeExit', 'exit']) {
  test(`a process that ends by ${how} without close delivers what it emitted`, async () => {
    const { dir, key, topic } = await setup();
    const child = spawnSync(process.execPath,
      ['-e', CHILD, path.resolve(__dirname, '..'), key.pemFile, key.keyId, path.join(dir, 'spool'), topic, how],
      { encoding: 'utf8', timeout: 60000, env: process.env });
    assert.equal(child.status, 0, child.stderr);
    const got = await read(topic, 15);
    assert.deepEqual(seqs(got), upTo(15));
    for (const r of got) assert.ok(verifies(r, key.publicKey));
  });
}

test('a signing key from an environment variable', async () => {
  const { dir, key, topic } = await setup();
  process.env.VIGIL_TEST_JS_SIGNING_KEY = key.pem;
  try {
    const opts = options({ dir, key, topic }, { signingKeyEnv: 'VIGIL_TEST_JS_SIGNING_KEY' });
    delete opts.signingKeyFile;
    const emitter = await vigil.Emitter.start(opts);
    emitter.emit(draft(1));
    await emitter.close();
  } finally {
    delete process.env.VIGIL_TEST_JS_SIGNING_KEY;
  }
  const [r] = await read(topic, 1);
  assert.ok(verifies(r, key.publicKey));
});
