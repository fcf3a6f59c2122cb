//! `brpc_etcd_registration_options`: how a server registers itself in
//! etcd (a part of `brpc_server_options`; `brpc::ServerOptions`'
//! `etcd_registration_*` fields in the C++ facade).

#![allow(non_camel_case_types)]

use std::ffi::c_char;

use super::c_string;
use crate::etcd::RegistrationOptions;

/// Registration of a server in etcd. With a `url`, `brpc_server_start`
/// puts the key `<prefix>/<ip:port>` holding `ip:port[ tag]` under a lease
/// it keeps alive, before it returns (an etcd it cannot reach fails the
/// start), and `brpc_server_stop` revokes the lease, deleting the key. A
/// process that dies without stopping leaves its key until the lease
/// lapses (`ttl_s`). Clients find the servers with the naming service
/// `etcd://host:port/prefix`. The strings are read during
/// `brpc_server_start` only; the caller keeps owning them.
#[repr(C)]
pub struct brpc_etcd_registration_options {
    /// "etcd://host:port[,host:port...]/prefix"; NULL or "" (default): the
    /// server does not register.
    pub url: *const c_char,
    /// The "ip:port" clients should call; NULL or "" (default): the address
    /// listened on, or when that is 0.0.0.0, the local address that
    /// reaches etcd.
    pub address: *const c_char,
    /// brpc's optional tag written after the address; NULL or "": none.
    pub tag: *const c_char,
    /// The lease's TTL in seconds; default 5 (etcd raises values below its
    /// minimum, about 2). Values below 1 fail the start with `EINVAL`.
    pub ttl_s: i32,
}

impl brpc_etcd_registration_options {
    pub(super) fn defaults() -> Self {
        let defaults = RegistrationOptions::default();
        brpc_etcd_registration_options {
            url: std::ptr::null(),
            address: std::ptr::null(),
            tag: std::ptr::null(),
            ttl_s: defaults.ttl_s.clamp(1, i32::MAX as i64) as i32,
        }
    }

    /// The registration asked for, if any.
    ///
    /// # Safety
    /// The strings are NULL or NUL-terminated, readable during the call
    /// (the caller's promise on `brpc_server_start`).
    pub(super) unsafe fn to_rust(&self) -> Option<RegistrationOptions> {
        // SAFETY: NULL or NUL-terminated strings (this function's contract).
        let (url, address, tag) = unsafe { (c_string(self.url), c_string(self.address), c_string(self.tag)) };
        if url.is_empty() {
            return None;
        }
        Some(RegistrationOptions { url, address, tag, ttl_s: i64::from(self.ttl_s) })
    }
}
