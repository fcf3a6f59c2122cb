//! Fuzzes the cutter and the meta decoders; see `cutter_checks.rs`.

#![no_main]

mod cutter_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cutter_checks::check_input(data);
});
