//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// The directory of the wire captures: `$BRPC_WIRE_DIR` when set (and then
/// it must exist), else `../shared/wire` beside the checkout, else
/// `/work/shared/wire`. Panics when there are none: those tests must fail,
/// not skip.
pub fn wire_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BRPC_WIRE_DIR") {
        let dir = PathBuf::from(dir);
        assert!(dir.is_dir(), "BRPC_WIRE_DIR={} is not a directory", dir.display());
        return dir;
    }
    let candidates = [Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/wire"), PathBuf::from("/work/shared/wire")];
    candidates
        .into_iter()
        .find(|dir| dir.is_dir())
        .expect("no wire captures: set BRPC_WIRE_DIR or put them in ../shared/wire")
}
