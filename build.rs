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
    // Only the ffi module is the C ABI; parsing just it keeps the crate's
    // other public items (errno constants, protocol limits) out of C.
    let generated = cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src").join("ffi").join("mod.rs"))
        .generate();
    match generated {
        Ok(bindings) => {
            bindings.write_to_file(out);
        }
        Err(err) => println!("cargo:warning=cbindgen could not generate the header: {err}"),
    }
}
