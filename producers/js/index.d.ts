// Types of vigil-sdk. The event types are generated from the .avsc files (events.d.ts).

import type { VerificationEvent } from './events';

export * from './events';

/** Emitter options. The signing key comes from `signingKeyFile` or `signingKeyEnv`. */
export interface EmitterOptions {
  /** The emitting service, filled into each event's `producer.service`. */
  service: string;
  /** Key id the signatures name (`vigil-key-id`). */
  keyId: string;
  /** Directory of the crash-safe spool; one emitter per directory. */
  spoolDir: string;
  /** Ed25519 signing key, a PKCS#8 PEM file. */
  signingKeyFile?: string;
  /** Name of an environment variable holding the PKCS#8 PEM text. */
  signingKeyEnv?: string;
  /** Kafka bootstrap servers; `VIGIL_KAFKA_BOOTSTRAP` when absent. */
  bootstrapServers?: string;
  /** Schema registry URL; `VIGIL_SCHEMA_REGISTRY_URL` when absent. */
  schemaRegistryUrl?: string;
  /** `producer.host`; this machine's name when absent. */
  host?: string;
  /** Raw topic (default `vigil.events.raw`). */
  topic?: string;
  /** Events queued in memory before `emit` spills to the spool. */
  queueCapacity?: number;
  /** How long librdkafka tries a record before it goes to the spool. */
  deliveryTimeoutMs?: number;
  /** Spool size bound; beyond it events are dropped and counted. */
  spoolMaxBytes?: number;
  /** Spool segment size. */
  spoolSegmentBytes?: number;
  /** When spooled records are forced to disk: `always`, `never`, `every:N` records, `interval_ms:N`. */
  spoolFsync?: 'always' | 'never' | `every:${number}` | `interval_ms:${number}`;
  /** Records per spool drain batch. */
  drainBatchRecords?: number;
  /** How long close waits for the broker before spooling the rest. */
  closeTimeoutMs?: number;
}

/** What a flush or close left behind. */
export interface FlushReport {
  /** Records librdkafka still held when the timeout ran out. */
  inFlight: number;
  /** Records in the disk spool, delivered by this or the next emitter on the directory. */
  spooled: number;
}

/** Delivery counters. */
export interface Counters {
  emitted: number;
  delivered: number;
  spooled: number;
  dropped: number;
}

export type VigilErrorCode =
  | 'ERR_VIGIL_CONFIG'
  | 'ERR_VIGIL_SIGNING_KEY'
  | 'ERR_VIGIL_SCHEMA_REGISTRY'
  | 'ERR_VIGIL_START'
  | 'ERR_VIGIL_INVALID_EVENT'
  | 'ERR_VIGIL_ENCODE'
  | 'ERR_VIGIL_CLOSED'
  | 'ERR_VIGIL_DROPPED';

/** Every error the SDK throws or rejects with. */
export class VigilError extends Error {
  readonly code: VigilErrorCode;
}

export const CODES: Readonly<Record<string, VigilErrorCode>>;

/** The core's version, which events carry as `producer.sdk_version`. */
export const SDK_VERSION: string;

/** Emits signed events to Kafka without ever blocking the caller on the network. */
export class Emitter {
  private constructor();
  /** Starts an emitter (the registry call runs on a worker thread). */
  static start(options: EmitterOptions): Promise<Emitter>;
  /** Completes, signs and queues an event; returns at once. */
  emit(event: VerificationEvent): void;
  /** Waits up to `timeoutMs` (default 10 000) until every event is acknowledged or spooled. */
  flush(timeoutMs?: number): Promise<FlushReport>;
  /** Stops accepting events, flushes, spools the rest. Idempotent. */
  close(): Promise<FlushReport>;
  /** `close` on the calling thread, for exit hooks. */
  closeSync(): FlushReport;
  /** Metrics in the Prometheus text format. */
  metricsText(): string;
  /** Delivery counters so far. */
  counters(): Counters;
}

/** Runs `fn` in the trace `traceparent` names, or a new one; `fn` gets the traceparent to
 * hand on. Events emitted inside carry its trace id. */
export function continueTrace<T>(traceparent: string | null | undefined, fn: (handOn: string) => T): T;

/** The current W3C traceparent (OpenTelemetry's, else the SDK's own), or null. */
export function currentTraceparent(): string | null;

/** A record as the emitter would send it. */
export interface SignedRecord {
  key: Buffer;
  value: Buffer;
  headers: { name: string; value: Buffer }[];
}

/** Signs an event as the emitter would, without sending it. */
export function signRecord(event: VerificationEvent, signingKeyPem: string, keyId: string, schemaId: number): SignedRecord;
