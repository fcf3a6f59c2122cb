//! Fuzzes a live server over loopback TCP; see `live_checks.rs`.

#![no_main]

mod live_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    live_checks::check_input(data);
});
