// Vigil producer SDK for Node.js.
//
//   const vigil = require('vigil-sdk');
//   const emitter = await vigil.Emitter.start({
//     service: 'payments-api', keyId: 'payments-1',
//     signingKeyFile: '/etc/vigil/signing.pem', spoolDir: '/var/lib/vigil/spool',
//   });
//   emitter.emit({ class_uid: 'authentication', activity_name: 'logon', status_id: 'failure',
//                  subject: { principal: 'alice' } });
//   await emitter.close();
//
// `emit` is synchronous and never waits for the broker: it completes the event (event_id,
// nonce, occurred_at, the producer block), queues it and returns; the Rust core signs and sends
// it on its own thread and keeps it in a crash-safe disk spool while the broker is unreachable.
// Signing, encoding and spooling are the Rust SDK's (`vigil-producer`), so the bytes are the
// same in every language.
'use strict';

const { AsyncLocalStorage } = require('node:async_hooks');
const crypto = require('node:crypto');
const path = require('node:path');

let native;
try {
  native = require(path.join(__dirname, 'vigil.node'));
} catch (e) {
  throw new Error(`vigil-sdk: the native core is not built (${e.message}); ` +
    'run `npm install` in the package, or `node build.js`, with a Rust toolchain');
}

const SDK_VERSION = native.sdkVersion();

/** The codes a `VigilError` carries, by the core's code. */
const CODES = Object.freeze({
  config: 'ERR_VIGIL_CONFIG',
  signing_key: 'ERR_VIGIL_SIGNING_KEY',
  schema_registry: 'ERR_VIGIL_SCHEMA_REGISTRY',
  start: 'ERR_VIGIL_START',
  invalid_event: 'ERR_VIGIL_INVALID_EVENT',
  encode: 'ERR_VIGIL_ENCODE',
  closed: 'ERR_VIGIL_CLOSED',
  dropped: 'ERR_VIGIL_DROPPED',
});

/** Every error the SDK throws or rejects with; `code` is one of `CODES`. */
class VigilError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'VigilError';
    this.code = code;
  }
}

function translate(e) {
  const m = /^\[([a-z_]+)\] ([\s\S]*)$/.exec(e && e.message);
  if (!m || !(m[1] in CODES)) return e;
  return new VigilError(CODES[m[1]], m[2]);
}

function call(fn) {
  try {
    return fn();
  } catch (e) {
    throw translate(e);
  }
}

// An async wrapper, so a synchronous throw (a closed emitter, bad options) rejects too.
async function settle(fn) {
  try {
    return await fn();
  } catch (e) {
    throw translate(e);
  }
}

// --- trace context ---------------------------------------------------------------------------

const traceStorage = new AsyncLocalStorage();
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

function parseTraceparent(value) {
  const m = TRACEPARENT.exec(String(value).trim().toLowerCase());
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2]) || /^0+$/.test(m[3])) {
    throw new VigilError(CODES.config, `not a W3C traceparent: ${JSON.stringify(value)}`);
  }
  return { traceId: m[2], spanId: m[3] };
}

let otel; // undefined: not looked up yet; null: not installed
function otelContext() {
  if (otel === undefined) {
    try {
      otel = require('@opentelemetry/api');
    } catch {
      otel = null;
    }
  }
  if (otel === null) return null;
  const span = otel.trace.getActiveSpan();
  const context = span && span.spanContext();
  if (!context || !otel.isSpanContextValid(context)) return null;
  return { traceId: context.traceId, spanId: context.spanId };
}

function currentContext() {
  return otelContext() || traceStorage.getStore() || null;
}

/**
 * Runs `fn` in a trace: the one `traceparent` names (from an incoming request), or a new one
 * when it is null or undefined. Events emitted inside, across awaits, carry its trace id with
 * a span of their own whose parent is the incoming span. `fn` gets the traceparent to hand on
 * to the next service; `continueTrace` returns what `fn` returns.
 */
function continueTrace(traceparent, fn) {
  const context = traceparent == null
    ? { traceId: crypto.randomBytes(16).toString('hex'), spanId: crypto.randomBytes(8).toString('hex') }
    : parseTraceparent(traceparent);
  return traceStorage.run(context, () => fn(`00-${context.traceId}-${context.spanId}-01`));
}

/** The W3C traceparent of the current context (OpenTelemetry's when a span is active, else
 * the SDK's own from `continueTrace`), or null outside any trace. */
function currentTraceparent() {
  const context = currentContext();
  return context ? `00-${context.traceId}-${context.spanId}-01` : null;
}

// --- the emitter -----------------------------------------------------------------------------

// Option names in JavaScript's idiom, and the core's (the Rust SDK's EmitterConfig keys).
const TOP_LEVEL = {
  service: 'service', keyId: 'key_id', signingKeyFile: 'signing_key_file',
  signingKeyEnv: 'signing_key_env', bootstrapServers: 'bootstrap_servers',
  schemaRegistryUrl: 'schema_registry_url', host: 'host',
};
const EMITTER = {
  spoolDir: 'spool_dir', topic: 'topic', queueCapacity: 'queue_capacity',
  deliveryTimeoutMs: 'delivery_timeout_ms', spoolMaxBytes: 'spool_max_bytes',
  spoolSegmentBytes: 'spool_segment_bytes', spoolFsync: 'spool_fsync',
  drainBatchRecords: 'drain_batch_records', closeTimeoutMs: 'close_timeout_ms',
};

function coreOptions(options) {
  if (options === null || typeof options !== 'object') {
    throw new VigilError(CODES.config, 'Emitter.start needs an options object');
  }
  const out = { emitter: {} };
  const unknown = [];
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined) continue;
    if (name in TOP_LEVEL) out[TOP_LEVEL[name]] = value;
    else if (name in EMITTER) out.emitter[EMITTER[name]] = value;
    else unknown.push(name);
  }
  if (unknown.length) {
    throw new VigilError(CODES.config, `unknown emitter option(s): ${unknown.sort().join(', ')}`);
  }
  return out;
}

const live = new Set();

function closeAllSync() {
  for (const emitter of [...live]) {
    try {
      emitter.closeSync();
    } catch {
      // An exit hook has nowhere to report to; what was not delivered is in the spool.
    }
  }
}

// beforeExit: the event loop ran dry with emitters open (a script that forgot close).
// exit: process.exit() was called; only synchronous work can run there.
process.on('beforeExit', closeAllSync);
process.on('exit', closeAllSync);

/** Emits signed events to Kafka without ever blocking the caller on the network. */
class Emitter {
  /** Use `Emitter.start`. */
  constructor(inner) {
    if (!inner || typeof inner.emit !== 'function') {
      throw new TypeError('use Emitter.start(options)');
    }
    this._inner = inner;
  }

  /**
   * Reads the signing key (a file, or an environment variable's PEM text; never logged),
   * resolves the schema id (the registry, or the id cached in the spool directory), starts the
   * core on a worker thread and resolves to the emitter. Records a dead process left in the
   * spool directory are delivered once the broker answers.
   */
  static async start(options) {
    const json = JSON.stringify(coreOptions(options));
    const emitter = new Emitter(await settle(() => native.start(json, SDK_VERSION)));
    live.add(emitter);
    return emitter;
  }

  /**
   * Completes, signs and queues `event` (Avro field names; see `VerificationEvent`). Returns
   * at once; throws `ERR_VIGIL_INVALID_EVENT` for a malformed event, `ERR_VIGIL_CLOSED` after
   * close, `ERR_VIGIL_DROPPED` when the queue and the spool are both full.
   */
  emit(event) {
    if (event === null || typeof event !== 'object' || Array.isArray(event)) {
      throw new VigilError(CODES.invalid_event, 'an event is an object');
    }
    const json = JSON.stringify(event);
    // The core gives an event without a trace a span of its own in the current trace, or a
    // fresh trace outside any.
    const context = currentContext();
    call(() => (context === null
      ? this._inner.emit(json)
      : this._inner.emit(json, context.traceId, context.spanId)));
  }

  /** Waits up to `timeoutMs` until every event so far is acknowledged or in the spool. */
  flush(timeoutMs = 10000) {
    return settle(() => this._inner.flush(timeoutMs));
  }

  /** Stops accepting events, flushes, spools what the broker did not take. Idempotent. */
  close() {
    live.delete(this);
    return settle(() => this._inner.close());
  }

  /** `close` on the calling thread, for exit hooks where no Promise can settle. */
  closeSync() {
    live.delete(this);
    return call(() => this._inner.closeSync());
  }

  /** The emitter's metrics in the Prometheus text format (the Rust SDK's names). */
  metricsText() {
    return call(() => this._inner.metricsText());
  }

  /** `emitted`, `delivered`, `spooled` and `dropped` so far. */
  counters() {
    return call(() => this._inner.counters());
  }
}

/** Signs `event` as the emitter would, without sending it: `{ key, value, headers }`. */
function signRecord(event, signingKeyPem, keyId, schemaId) {
  return call(() => native.signRecord(JSON.stringify(event), signingKeyPem, keyId, schemaId));
}

module.exports = {
  Emitter,
  VigilError,
  CODES,
  SDK_VERSION,
  continueTrace,
  currentTraceparent,
  signRecord,
};
