//! What a cache hit costs: wrapping the stored result bytes in the caller's id (what
//! cometgate does), against sending the stored body as it is (no id rewrite, the floor)
//! and against decoding and re-encoding the answer (what a naive cache does), for a
//! 2 KB and a 2 MB answer.

use bytes::Bytes;
use cometgate::jsonrpc::Id;
use cometgate::reply::Chunks;
use cometgate::upstream::Answer;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::FutureExt;
use http_body_util::BodyExt;

/// A JSON result of about `size` bytes shaped like block_results: many small events.
fn result_of(size: usize) -> Bytes {
    let event = r#"{"type":"transfer","attributes":[{"key":"recipient","value":"cosmos1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5lzv7xu","index":true},{"key":"amount","value":"1000uatom","index":true}]}"#;
    let mut out = String::from(r#"{"height":"12","txs_results":[{"code":0,"events":["#);
    while out.len() < size {
        out.push_str(event);
        out.push(',');
    }
    out.push_str(event);
    out.push_str("]}]}");
    Bytes::from(out)
}

/// A `Chunks` body is always ready, so it drains without a runtime.
fn drain(body: Chunks) -> usize {
    let mut frames = 0;
    let mut body = body;
    while let Some(Some(Ok(frame))) = body.frame().now_or_never() {
        frames += frame.into_data().map_or(0, |d| d.len());
    }
    frames
}

fn hit(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_hit");
    for (label, size) in [("2KB", 2 * 1024), ("2MB", 2 * 1024 * 1024)] {
        let stored = result_of(size);
        let answer = Answer::Result(stored.clone());
        let id = Id::number(42);
        let whole = Bytes::from(
            [
                &br#"{"jsonrpc":"2.0","id":7,"result":"#[..],
                &stored[..],
                b"}",
            ]
            .concat(),
        );
        group.throughput(Throughput::Bytes(stored.len() as u64));

        group.bench_with_input(
            BenchmarkId::new("stored_body_as_is", label),
            &whole,
            |b, whole| {
                b.iter(|| {
                    let body = Chunks::from(whole.clone());
                    std::hint::black_box(body.len())
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("id_rewrite_zero_copy", label),
            &answer,
            |b, answer| {
                b.iter(|| {
                    let mut body = Chunks::new();
                    body.extend(answer.parts(&id));
                    std::hint::black_box(body.len())
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("decode_and_reencode", label),
            &whole,
            |b, whole| {
                b.iter(|| {
                    let mut v: serde_json::Value = serde_json::from_slice(whole).expect("json");
                    v["id"] = serde_json::json!(42);
                    let body = Chunks::from(Bytes::from(serde_json::to_vec(&v).expect("encode")));
                    std::hint::black_box(body.len())
                })
            },
        );
        // Writing the zero-copy body out, to show the parts cost nothing extra to send.
        group.bench_with_input(
            BenchmarkId::new("id_rewrite_and_drain", label),
            &answer,
            |b, answer| {
                b.iter(|| {
                    let mut body = Chunks::new();
                    body.extend(answer.parts(&id));
                    std::hint::black_box(drain(body))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, hit);
criterion_main!(benches);
