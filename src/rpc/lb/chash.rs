//! `c_murmurhash` and `c_md5`: consistent hashing on the call's request
//! code. Each server stands on a ring of 32-bit hashes at 100 points
//! (brpc's `chash_num_replicas`), the hashes of "ip:port-i" for i in
//! 0..100; a call goes to the first point at or after its request code,
//! walking on past unusable servers. Adding one server to N moves about
//! 1/(N+1) of the codes. Programs compute request codes with the same
//! hash: `brpc::policy::MurmurHash32` / `MD5Hash32` (`murmur_hash32`,
//! `md5_hash32` here).

use std::io::Cursor;
use std::net::SocketAddr;

use md5::{Digest, Md5};
use parking_lot::RwLock;

use super::{addresses, no_server, LoadBalancer, SelectIn};
use crate::error::Error;
use crate::rpc::naming::ServerNode;

const REPLICAS: usize = 100;

#[derive(Clone, Copy)]
pub(super) enum Hash {
    Murmur3,
    Md5,
}

impl Hash {
    fn name(self) -> &'static str {
        match self {
            Hash::Murmur3 => "c_murmurhash",
            Hash::Md5 => "c_md5",
        }
    }

    fn of(self, key: &[u8]) -> u32 {
        match self {
            Hash::Murmur3 => murmur_hash32(key),
            Hash::Md5 => md5_hash32(key),
        }
    }
}

/// MurmurHash3 x86 32-bit with seed 0, as brpc's `MurmurHash32`.
pub fn murmur_hash32(key: &[u8]) -> u32 {
    // Reading from memory cannot fail.
    murmur3::murmur3_32(&mut Cursor::new(key), 0).unwrap_or_default()
}

/// The first four bytes of the MD5 digest, little-endian, as brpc's
/// `MD5Hash32`.
pub fn md5_hash32(key: &[u8]) -> u32 {
    let digest = Md5::digest(key);
    let mut first = [0u8; 4];
    first.copy_from_slice(&digest[..4]);
    u32::from_le_bytes(first)
}

pub(super) struct ConsistentHashing {
    hash: Hash,
    /// Sorted by hash.
    ring: RwLock<Vec<(u32, SocketAddr)>>,
}

impl ConsistentHashing {
    pub(super) fn new(hash: Hash) -> Self {
        ConsistentHashing { hash, ring: RwLock::new(Vec::new()) }
    }
}

impl LoadBalancer for ConsistentHashing {
    fn reset(&self, servers: &[ServerNode]) {
        let mut ring = Vec::with_capacity(servers.len() * REPLICAS);
        for addr in addresses(servers) {
            for i in 0..REPLICAS {
                ring.push((self.hash.of(format!("{addr}-{i}").as_bytes()), addr));
            }
        }
        ring.sort();
        *self.ring.write() = ring;
    }

    fn select(&self, input: &SelectIn<'_>) -> Result<SocketAddr, Error> {
        let Some(code) = input.request_code else {
            return Err(Error::new(libc::EINVAL, format!("{} needs Controller::set_request_code()", self.hash.name())));
        };
        let Ok(code) = u32::try_from(code) else {
            return Err(Error::new(libc::EINVAL, format!("{}: request_code must fit in 32 bits", self.hash.name())));
        };
        let ring = self.ring.read();
        let start = ring.partition_point(|(hash, _)| *hash < code);
        let n = ring.len();
        (0..n)
            .filter_map(|i| ring.get((start + i) % n).map(|(_, addr)| *addr))
            .find(|addr| (input.usable)(*addr))
            .ok_or_else(no_server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_the_reference_values() {
        // MurmurHash3_x86_32("hello", seed 0) and MD5("hello") = 5d41402a...
        assert_eq!(murmur_hash32(b"hello"), 0x248b_fa47);
        assert_eq!(md5_hash32(b"hello"), 0x2a40_415d);
    }
}
