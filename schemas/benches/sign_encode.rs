#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! Per-event CPU cost of the producer path (encode, frame, sign) and of verification, single
//! versus batched. The producer throughput ceiling is 1e9 / (encode+frame+sign ns) events/s/core.
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use apache_avro::writer::datum::GenericDatumWriter;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use vigil_schemas::signing::{BatchItem, verify_batch};
use vigil_schemas::vectors::fixed_event;
use vigil_schemas::{AvroRecord, Codec, EventSigner, RecordSigner, SchemaId, VerificationEvent};

const BATCH: usize = 256;

fn print_per_event(label: &str, iterations: u32, f: impl Fn()) {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let ns = start.elapsed().as_nanos() / u128::from(iterations);
    println!("per-event {label}: {ns} ns");
}

fn benches(c: &mut Criterion) {
    let event = fixed_event();
    let codec = Codec::<VerificationEvent>::new().unwrap_or_else(|e| panic!("{e}"));
    let signer = EventSigner::from_seed(&[7; 32]);
    let record_signer =
        RecordSigner::new(signer.clone(), SchemaId(1)).unwrap_or_else(|e| panic!("{e}"));
    let body = codec.encode(&event).unwrap_or_else(|e| panic!("{e}"));
    let framed = codec
        .encode_framed(SchemaId(1), &event)
        .unwrap_or_else(|e| panic!("{e}"));
    let signature = signer.sign(&framed);
    println!(
        "value size: {} bytes (body {} bytes)",
        framed.len(),
        body.len()
    );

    let value_writer = GenericDatumWriter::builder(VerificationEvent::schema())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));

    let mut g = c.benchmark_group("encode");
    g.bench_function("serde_path_body", |b| {
        b.iter(|| codec.encode(black_box(&event)))
    });
    g.bench_function("value_path_body", |b| {
        b.iter(|| {
            let v = apache_avro::to_value(black_box(&event))
                .and_then(|v| v.resolve(VerificationEvent::schema()))
                .and_then(|v| value_writer.write_value_to_vec(v));
            black_box(v)
        })
    });
    g.bench_function("serde_path_framed", |b| {
        b.iter(|| codec.encode_framed(SchemaId(1), black_box(&event)))
    });
    g.finish();

    let mut g = c.benchmark_group("decode");
    g.bench_function("fast_path", |b| b.iter(|| codec.decode(black_box(&body))));
    g.finish();

    let mut g = c.benchmark_group("sign");
    g.bench_function("sign_only", |b| b.iter(|| signer.sign(black_box(&framed))));
    g.bench_function("encode_frame_sign_record", |b| {
        b.iter(|| record_signer.sign(black_box(&event)))
    });
    g.finish();

    let values: Vec<Vec<u8>> = (0..BATCH)
        .map(|i| {
            let mut e = fixed_event();
            e.nonce = format!("{i:032x}");
            codec.encode_framed(SchemaId(1), &e).unwrap_or_default()
        })
        .collect();
    let signatures: Vec<_> = values.iter().map(|v| signer.sign(v)).collect();
    let public = *signer.public_key();
    let mut g = c.benchmark_group("verify");
    g.bench_function("single", |b| {
        b.iter(|| public.verify(black_box(&framed), &signature))
    });
    g.bench_function("batch_256", |b| {
        b.iter_batched(
            || {
                values
                    .iter()
                    .zip(&signatures)
                    .map(|(v, s)| BatchItem {
                        value: v,
                        signature: s,
                        key: &public,
                    })
                    .collect::<Vec<_>>()
            },
            |items| verify_batch(black_box(&items)),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // Plain per-event summary lines, easy to quote.
    print_per_event("encode (serde path)", 20_000, || {
        black_box(codec.encode(black_box(&event)).ok());
    });
    print_per_event("encode (Value path)", 5_000, || {
        let v = apache_avro::to_value(black_box(&event))
            .and_then(|v| v.resolve(VerificationEvent::schema()))
            .and_then(|v| value_writer.write_value_to_vec(v));
        black_box(v.ok());
    });
    print_per_event("decode (fast path)", 20_000, || {
        black_box(codec.decode(black_box(&body)).ok());
    });
    print_per_event("encode+frame+sign+headers", 5_000, || {
        black_box(record_signer.sign(black_box(&event)).ok());
    });
    print_per_event("verify single", 5_000, || {
        black_box(public.verify(black_box(&framed), &signature).is_ok());
    });
    let items: Vec<BatchItem<'_>> = values
        .iter()
        .zip(&signatures)
        .map(|(v, s)| BatchItem {
            value: v,
            signature: s,
            key: &public,
        })
        .collect();
    let start = Instant::now();
    let rounds = 40u32;
    for _ in 0..rounds {
        black_box(verify_batch(black_box(&items)));
    }
    let ns = start.elapsed().as_nanos() / (u128::from(rounds) * BATCH as u128);
    println!("per-event verify batch({BATCH}): {ns} ns");
}

criterion_group!(sign_encode, benches);
criterion_main!(sign_encode);
