//! Replays every input the `cutter` fuzz target ever failed on
//! (`tests/fuzz_regressions/`), through the same checks.

#[path = "../fuzz/fuzz_targets/cutter_checks.rs"]
mod cutter_checks;

use std::fs;
use std::path::Path;

#[test]
fn inputs_the_fuzzer_once_failed_on_pass_now() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut replayed = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let input = fs::read(&path).unwrap();
        // Every first byte, so every split of the input into reads is tried.
        for seed in 0..=u8::MAX {
            let mut data = input.clone();
            data[0] = seed;
            cutter_checks::check_input(&data);
        }
        replayed += 1;
    }
    assert!(replayed > 0, "no inputs in {}", dir.display());
}
