//! What the library copies on a stream's way, measured with a counting
//! global allocator, not with timings. A connected stream frames a message
//! on the writing thread: a flattened message would be a payload-sized
//! allocation there, so that thread's allocations must stay a small part of
//! the payload. Sender and receiver share the process: the receiving
//! side's read buffers hold the payload at most once (the kernel's copy
//! lands there, and a buffer whose messages are gone is reused); a copied
//! delivery would add the payload again.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use brpc_stream::rpc::{CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions};
use brpc_stream::stream::{self, StreamHandler, StreamId, StreamOptions};
use brpc_stream::Error;
use bytes::Bytes;

struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// What this thread allocated.
    static MINE: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    ALLOCATED.fetch_add(bytes as u64, Ordering::Relaxed);
    let _ = MINE.try_with(|mine| mine.set(mine.get() + bytes as u64));
}

// SAFETY: every call is passed on to the system allocator unchanged; only
// the requested sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size.saturating_sub(layout.size()));
        // SAFETY: allocated by System with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts the bytes it is handed and checks them against `expected`.
struct Checking {
    expected: Bytes,
    bytes: AtomicU64,
    mismatches: AtomicU64,
    closed: Mutex<Option<mpsc::Sender<()>>>,
}

impl StreamHandler for Checking {
    fn on_received_messages(&self, _id: StreamId, messages: &[Bytes]) {
        for message in messages {
            if *message != self.expected {
                self.mismatches.fetch_add(1, Ordering::Relaxed);
            }
            self.bytes.fetch_add(message.len() as u64, Ordering::Relaxed);
        }
    }
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {
        if let Some(tx) = self.closed.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
    fn on_failed(&self, _id: StreamId, _error: &Error) {}
}

/// What sending took.
struct Sent {
    payload: u64,
    /// Allocated by the process from the first write until the handler got
    /// the last byte.
    allocated: u64,
    /// Allocated by the writing thread in its writes.
    by_writer: u64,
}

/// Sends `count` messages made of `chunks` over a connected stream.
fn send(chunks: &[Bytes], count: usize) -> Sent {
    let expected: Bytes = chunks.iter().flat_map(|c| c.iter().copied()).collect::<Vec<u8>>().into();
    let payload = (expected.len() * count) as u64;
    let (closed_tx, closed_rx) = mpsc::channel();
    let handler = Arc::new(Checking {
        expected,
        bytes: AtomicU64::new(0),
        mismatches: AtomicU64::new(0),
        closed: Mutex::new(Some(closed_tx)),
    });
    let server = Server::new();
    let accept_with = Arc::clone(&handler);
    server
        .add_method(
            "test.StreamService",
            "Open",
            Arc::new(move |call: ServerCall| {
                let settings = call.stream_settings().cloned().expect("the request carries streams");
                let handler: Arc<dyn StreamHandler> = accept_with.clone();
                let options = StreamOptions { handler: Some(handler), ..Default::default() };
                let ids = stream::accept(call.host(), &settings, &options, 1).unwrap();
                call.respond_with_streams(Ok((Bytes::from_static(b"accepted"), Bytes::new())), &ids);
            }),
        )
        .unwrap();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let addr = format!("127.0.0.1:{}", server.listen_address().unwrap().port());
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let ids = stream::create(1, &StreamOptions::default()).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let streams = ids.clone();
    channel.call(
        CallRequest {
            service: "test.StreamService".into(),
            method: "Open".into(),
            stream_settings: stream::settings_for(&ids),
            ..Default::default()
        },
        Box::new(move |outcome| {
            let settings = outcome.result.as_ref().ok().and_then(|m| m.meta.stream_settings.clone());
            let error = outcome.error();
            let then = Box::new(move || drop(done_tx.send(error)));
            stream::on_setup_response(&streams, outcome.socket, outcome.error(), settings.as_ref(), then);
        }),
    );
    assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), None);
    let id = ids[0];
    let messages: Vec<Vec<Bytes>> = (0..count).map(|_| chunks.to_vec()).collect();

    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut by_writer = 0;
    for message in &messages {
        let list = message.clone();
        let mine = MINE.with(Cell::get);
        // A refused write keeps nothing: each attempt gets its own list.
        let mut written = stream::write_chunks(id, list, false);
        by_writer += MINE.with(Cell::get) - mine;
        while let Err(error) = written {
            assert_eq!(error.code(), libc::EAGAIN, "write: {error}");
            assert_eq!(stream::wait(id, Some(Duration::from_secs(10))), Ok(()));
            let list = message.clone();
            let mine = MINE.with(Cell::get);
            written = stream::write_chunks(id, list, false);
            by_writer += MINE.with(Cell::get) - mine;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while handler.bytes.load(Ordering::Relaxed) < payload && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let allocated = ALLOCATED.load(Ordering::Relaxed) - before;
    eprintln!(
        "{count} messages of {} bytes, {payload} bytes: {allocated} bytes allocated, {by_writer} of them by the writer",
        payload / count as u64
    );

    assert_eq!(handler.bytes.load(Ordering::Relaxed), payload);
    assert_eq!(handler.mismatches.load(Ordering::Relaxed), 0);
    stream::close(id).unwrap();
    closed_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Sent { payload, allocated, by_writer }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(131).wrapping_add(seed) ^ (i >> 11) as u8).collect()
}

// One test, so nothing else allocates in the process while it measures.
#[test]
fn payloads_are_copied_by_the_kernel_and_never_by_the_library() {
    // A 1 MiB message of 256 blocks: a header and 256 iovecs, which go out
    // in sendmsg calls of at most 256 iovecs each, never as one buffer.
    let blocks: Vec<Bytes> = (0..256).map(|i| Bytes::from(pattern(4096, i as u8))).collect();
    let sent = send(&blocks, 16);
    assert!(sent.by_writer < sent.payload / 16, "1 MiB messages of 256 blocks flattened");
    assert!(sent.allocated < sent.payload + sent.payload / 4, "1 MiB messages copied on their way");
    // 4 KiB messages, each one block: framed behind a header, not copied.
    let sent = send(&[Bytes::from(pattern(4096, 7))], 4096);
    assert!(sent.by_writer < sent.payload / 16, "4 KiB messages copied behind their header");
    assert!(sent.allocated < sent.payload + sent.payload / 4, "4 KiB messages copied on their way");
}
