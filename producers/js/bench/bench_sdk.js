// The Node side of scripts/bench-sdk (prints JSON lines; the script computes the ratios).
//
// 1. emit: the same drafts the Rust bench emits (benches/sdk.rs), per-emit p50/p99 in µs and
//    events/s from the first emit until the broker acknowledged the last;
// 2. overhead: a loop of real Ed25519 verifies (node:crypto), each iteration timed, without
//    and with one emit per verify, broker up and broker unreachable (events spool), p50/p99.
//
// Input: VIGIL_BENCH_TOPIC, VIGIL_BENCH_EVENTS, VIGIL_BENCH_LOOP, VIGIL_BENCH_KEY_FILE,
// VIGIL_BENCH_SPOOL, VIGIL_BENCH_DEAD_BROKER and the stack's VIGIL_* addresses.
'use strict';

const crypto = require('node:crypto');
const path = require('node:path');
const vigil = require('..');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run scripts/bench-sdk)`);
  return value;
};

const draft = (i) => ({
  class_uid: 'authentication', activity_name: 'logon', status_id: 'failure',
  subject: { principal: `svc-${i % 100}` }, attributes: { request: `req-${i}` },
});

const pct = (sorted, p) => Number(sorted[Math.min(Math.floor(sorted.length * p), sorted.length - 1)]) / 1000;

const start = (tag, extra = {}) => vigil.Emitter.start({
  service: `bench-js-${tag}`, keyId: 'bench-key', signingKeyFile: env('VIGIL_BENCH_KEY_FILE'),
  spoolDir: path.join(env('VIGIL_BENCH_SPOOL'), `js-${tag}`), topic: env('VIGIL_BENCH_TOPIC'), ...extra,
});

async function emitFigures(events) {
  const drafts = Array.from({ length: events }, (_, i) => draft(i));
  const costs = new BigInt64Array(events);
  const emitter = await start('emit');
  const begin = process.hrtime.bigint();
  for (let i = 0; i < events; i++) {
    const t = process.hrtime.bigint();
    emitter.emit(drafts[i]);
    costs[i] = process.hrtime.bigint() - t;
  }
  const report = await emitter.flush(120000);
  const elapsed = Number(process.hrtime.bigint() - begin) / 1e9;
  await emitter.close();
  if (report.inFlight !== 0) throw new Error('broker did not acknowledge every event');
  costs.sort();
  return { lang: 'js', events, p50_us: pct(costs, 0.5), p99_us: pct(costs, 0.99),
    events_per_s: events / elapsed, spooled: report.spooled };
}

function verifyLoop(iterations, emitter) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const message = crypto.randomBytes(200);
  const signature = crypto.sign(null, message, privateKey);
  const costs = new BigInt64Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const t = process.hrtime.bigint();
    if (!crypto.verify(null, message, publicKey, signature)) throw new Error('verify failed');
    if (emitter) emitter.emit(draft(i));
    costs[i] = process.hrtime.bigint() - t;
  }
  costs.sort();
  return costs;
}

async function overhead(iterations, broker, tag) {
  verifyLoop(Math.floor(iterations / 10), null); // warm up
  const base = verifyLoop(iterations, null);
  const emitter = await start(tag, { bootstrapServers: broker, deliveryTimeoutMs: 2000, closeTimeoutMs: 2000 });
  const loaded = verifyLoop(iterations, emitter);
  await emitter.close();
  return { lang: 'js', overhead: tag, iterations,
    verify_p50_us: pct(base, 0.5), verify_p99_us: pct(base, 0.99),
    with_emit_p50_us: pct(loaded, 0.5), with_emit_p99_us: pct(loaded, 0.99) };
}

(async () => {
  console.log(JSON.stringify(await emitFigures(Number(env('VIGIL_BENCH_EVENTS')))));
  const iterations = Number(env('VIGIL_BENCH_LOOP'));
  console.log(JSON.stringify(await overhead(iterations, env('VIGIL_KAFKA_BOOTSTRAP'), 'broker-up')));
  console.log(JSON.stringify(await overhead(iterations, env('VIGIL_BENCH_DEAD_BROKER'), 'broker-down')));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
