//! fd ownership, connect, the write queue, reading, failing.

pub mod write_queue;
