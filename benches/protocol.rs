//! Frame packing and cutting: the per-message work of the protocol layer.
//!
//!     cargo bench --bench protocol            # full measurement
//!     cargo bench --bench protocol -- --quick # a few seconds

use std::hint::black_box;

use brpc_stream::protocol::{
    pack_stream, pack_stream_header, Cut, Cutter, FrameType, Limits, StreamFrame, StreamFrameMeta,
};
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// The meta of a DATA frame as a stream sends it.
fn data_meta() -> StreamFrameMeta {
    StreamFrameMeta {
        stream_id: Some(1),
        source_stream_id: Some(2),
        frame_type: Some(FrameType::Data as i32),
        has_continuation: Some(false),
        feedback: None,
    }
}

/// `count` whole DATA frames of `payload_len` bytes each, back to back.
fn frames(count: usize, payload_len: usize) -> BytesMut {
    let meta = data_meta();
    let payload = vec![b'x'; payload_len];
    let mut out = BytesMut::new();
    for _ in 0..count {
        if let Err(error) = pack_stream(&mut out, &meta, &payload) {
            panic!("packing a bench frame: {}", error.text);
        }
    }
    out
}

/// Cuts every frame out of `buf` and decodes its meta. The frames are
/// returned so that freeing them (a munmap for 1 MiB) falls outside the
/// measured time: that is the consumer's cost, not the cutter's.
fn cut_all(cutter: &mut Cutter, buf: &mut BytesMut) -> Vec<StreamFrame> {
    let mut cut = Vec::new();
    while let Cut::Frame(frame) = cutter.cut(buf) {
        if let Ok(decoded) = StreamFrame::decode(&frame) {
            cut.push(decoded);
        }
    }
    cut
}

fn pack_data_header(c: &mut Criterion) {
    let meta = data_meta();
    let mut out = BytesMut::with_capacity(64);
    c.bench_function("pack DATA header", |b| {
        b.iter(|| {
            out.clear();
            let _ = pack_stream_header(&mut out, black_box(&meta), black_box(64));
            black_box(out.len())
        })
    });
}

fn cut_small_frames(c: &mut Criterion) {
    const COUNT: usize = 1000;
    let packed = frames(COUNT, 64);
    let mut group = c.benchmark_group("cut");
    group.throughput(Throughput::Elements(COUNT as u64));
    group.bench_function("1000 frames of 64 B", |b| {
        b.iter_batched(
            || packed.clone(),
            |mut buf| {
                let mut cutter = Cutter::new(Limits::default());
                let cut = cut_all(&mut cutter, &mut buf);
                if cut.len() != COUNT {
                    panic!("cut {} of {COUNT} frames", cut.len());
                }
                (buf, cut)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn cut_large_frame(c: &mut Criterion) {
    const LEN: usize = 1 << 20;
    let packed = frames(1, LEN);
    let mut group = c.benchmark_group("cut");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.bench_function("one frame of 1 MiB", |b| {
        b.iter_batched(
            || packed.clone(),
            |mut buf| {
                let mut cutter = Cutter::new(Limits::default());
                let cut = cut_all(&mut cutter, &mut buf);
                if cut.len() != 1 {
                    panic!("the 1 MiB frame was not cut");
                }
                (buf, cut)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, pack_data_header, cut_small_frames, cut_large_frame);
criterion_main!(benches);
