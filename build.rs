//! Generates `include/brpc_stream.h` from the `extern "C"` items in `src/ffi`.
//! The header is committed; `.ci/run` fails when a build changes it.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    let config = match cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")) {
        Ok(config) => config,
        Err(err) => {
            println!("cargo:warning=cbindgen.toml: {err}");
            return;
        }
    };
    let out = crate_dir.join("include").join("brpc_stream.h");
    match cbindgen::generate_with_config(&crate_dir, config) {
        Ok(bindings) => {
            bindings.write_to_file(out);
        }
        Err(err) => println!("cargo:warning=cbindgen could not generate the header: {err}"),
    }
}
