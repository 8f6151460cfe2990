// The Node side of scripts/bench-sdk (prints JSON lines; the script computes the ratios).
//
// 1. emit: the same drafts the Rust bench emits (benches/sdk.rs), per-emit p50/p99 in µs,
//    events/s from the first emit until the broker acknowledged the last, and how many
//    spilled to the spool on the way;
// 2. overhead: a loop of real Ed25519 verifies (node:crypto), each iteration timed, without
//    and with one emit per verify (alternating blocks of 200), broker up and broker unreachable (events spool), p50/p99.
//    With VIGIL_BENCH_CPUS=LOOP:OTHER only this part runs, the loop's thread alone on one CPU
//    and every other thread on the other (scripts/bench-sdk puts the stack there too).
//
// Input: VIGIL_BENCH_TOPIC, VIGIL_BENCH_EVENTS, VIGIL_BENCH_LOOP, VIGIL_BENCH_KEY_FILE,
// VIGIL_BENCH_SPOOL, VIGIL_BENCH_DEAD_BROKER and the stack's VIGIL_* addresses.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
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
  // A burst faster than signing spills to the spool (by design); the figure runs until the
  // broker acknowledged every event, spilled ones included.
  const deadline = Date.now() + 120000;
  await emitter.flush(120000);
  while (emitter.counters().delivered < events && Date.now() < deadline) {
    await new Promise((resolve) => { setTimeout(resolve, 5); });
  }
  const elapsed = Number(process.hrtime.bigint() - begin) / 1e9;
  const counters = emitter.counters();
  await emitter.close();
  if (counters.delivered !== events) {
    throw new Error(`broker acknowledged ${JSON.stringify(counters)} within 120 s`);
  }
  costs.sort();
  return { lang: 'js', events, p50_us: pct(costs, 0.5), p99_us: pct(costs, 0.99),
    events_per_s: events / elapsed, spilled: counters.spooled };
}

const BLOCK = 200; // iterations per block; blocks without and with emit alternate

// The loop without and with one emit per verify, in alternating blocks, so the machine's noise
// (other tenants, the broker's pauses) falls on both alike.
function verifyLoops(iterations, emitter) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const message = crypto.randomBytes(200);
  const signature = crypto.sign(null, message, privateKey);
  const blocks = Math.max(Math.floor(iterations / BLOCK), 1);
  const base = new BigInt64Array(blocks * BLOCK);
  const loaded = new BigInt64Array(blocks * BLOCK);
  for (let block = 0; block < blocks; block++) {
    for (let i = 0; i < BLOCK; i++) {
      const t = process.hrtime.bigint();
      if (!crypto.verify(null, message, publicKey, signature)) throw new Error('verify failed');
      base[block * BLOCK + i] = process.hrtime.bigint() - t;
    }
    for (let i = 0; i < BLOCK; i++) {
      const event = draft(block * BLOCK + i); // the application's, as in the Rust loop
      const t = process.hrtime.bigint();
      if (!crypto.verify(null, message, publicKey, signature)) throw new Error('verify failed');
      emitter.emit(event);
      loaded[block * BLOCK + i] = process.hrtime.bigint() - t;
    }
  }
  base.sort();
  loaded.sort();
  return [base, loaded];
}

// `LOOP:OTHER` (VIGIL_BENCH_CPUS): the main thread, the loop's, on CPU LOOP; every other
// thread of the process (the core's encoder, librdkafka's, V8's and libuv's) on CPU OTHER.
function pin(cpus) {
  const [loopCpu, otherCpu] = cpus.split(':');
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      execFileSync('taskset', ['-p', '-c', Number(tid) === process.pid ? loopCpu : otherCpu, tid],
        { stdio: 'ignore' });
    } catch (e) {
      // The thread ended between the listing and now.
      if (fs.existsSync(`/proc/self/task/${tid}`)) throw e;
    }
  }
}

async function overhead(iterations, broker, tag, cpus) {
  const emitter = await start(tag, { bootstrapServers: broker, deliveryTimeoutMs: 2000, closeTimeoutMs: 2000 });
  if (cpus) pin(cpus);
  verifyLoops(Math.floor(iterations / 10), emitter); // warm up
  const [base, loaded] = verifyLoops(iterations, emitter);
  await emitter.close();
  return { lang: 'js', overhead: cpus ? `${tag} pinned` : tag, iterations,
    verify_p50_us: pct(base, 0.5), verify_p99_us: pct(base, 0.99),
    with_emit_p50_us: pct(loaded, 0.5), with_emit_p99_us: pct(loaded, 0.99) };
}

(async () => {
  const cpus = process.env.VIGIL_BENCH_CPUS;
  if (!cpus) console.log(JSON.stringify(await emitFigures(Number(env('VIGIL_BENCH_EVENTS')))));
  const iterations = Number(env('VIGIL_BENCH_LOOP'));
  console.log(JSON.stringify(await overhead(iterations, env('VIGIL_KAFKA_BOOTSTRAP'), 'broker-up', cpus)));
  console.log(JSON.stringify(await overhead(iterations, env('VIGIL_BENCH_DEAD_BROKER'), 'broker-down', cpus)));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
