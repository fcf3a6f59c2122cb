//! Generates `include/brpc_stream.h` from the `extern "C"` items in `src/ffi`
//! (the header is committed; `.ci/run` fails when a build changes it), and
//! gives the shared library its SONAME and its export list.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into()));
    // The SONAME's number is the crate's major version: programs linked to
    // libbrpc_stream.so.0 load any 0.x. The version script keeps every
    // symbol but the C ABI's `brpc_*` local.
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libbrpc_stream.so.{major}");
    let exports = crate_dir.join("src").join("ffi").join("exports.map");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", exports.display());
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
