//! The body of a PRPC message as brpc codes it: the serialized protobuf,
//! optionally compressed (`compress_type`, RpcMeta field 3), optionally
//! covered by a checksum (`checksum_type`, `checksum_value`,
//! `checksum_with_attachment`, fields 11–13). The attachment travels after
//! the body as it is: never compressed.
//!
//! As brpc's `baidu_rpc_protocol.cpp` does it:
//! - sending: compress the body, then compute the checksum over the
//!   compressed body (and the attachment after it when
//!   `checksum_with_attachment`);
//! - receiving: verify the checksum over the bytes as they arrived, then
//!   decompress.
//!
//! CRC32C is sent as the masked CRC (LevelDB's mask: rotate right by 15,
//! add `0xa282ead8`) in 4 big-endian bytes. Snappy is the raw format (no
//! framing), gzip and zlib are RFC 1952 and RFC 1950 streams.
//!
//! Divergences from brpc, both on input brpc would not send: a checksum
//! type other than none and CRC32C is refused (brpc skips verifying it),
//! and a CRC32C value that is not 4 bytes is an error (brpc aborts on a
//! `CHECK`).

use std::fmt;
use std::io::Read;

use bytes::Bytes;

use super::meta::RpcMeta;

/// `brpc::CompressType` (brpc's `options.proto`).
pub const COMPRESS_TYPE_NONE: i32 = 0;
pub const COMPRESS_TYPE_SNAPPY: i32 = 1;
pub const COMPRESS_TYPE_GZIP: i32 = 2;
pub const COMPRESS_TYPE_ZLIB: i32 = 3;
/// Declared by brpc, but baidu_std has no LZ4 codec there either.
pub const COMPRESS_TYPE_LZ4: i32 = 4;

/// `brpc::ChecksumType` (brpc's `options.proto`).
pub const CHECKSUM_TYPE_NONE: i32 = 0;
pub const CHECKSUM_TYPE_CRC32C: i32 = 1;

/// The compressions this library codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    Snappy,
    Gzip,
    Zlib,
}

impl Compression {
    /// `None` for a number brpc does not define or that has no codec.
    pub fn from_wire(value: i32) -> Option<Compression> {
        match value {
            COMPRESS_TYPE_NONE => Some(Compression::None),
            COMPRESS_TYPE_SNAPPY => Some(Compression::Snappy),
            COMPRESS_TYPE_GZIP => Some(Compression::Gzip),
            COMPRESS_TYPE_ZLIB => Some(Compression::Zlib),
            _ => None,
        }
    }

    pub fn wire(self) -> i32 {
        match self {
            Compression::None => COMPRESS_TYPE_NONE,
            Compression::Snappy => COMPRESS_TYPE_SNAPPY,
            Compression::Gzip => COMPRESS_TYPE_GZIP,
            Compression::Zlib => COMPRESS_TYPE_ZLIB,
        }
    }
}

/// brpc's name of a compress type, as its error texts print it.
pub fn compress_type_name(value: i32) -> &'static str {
    match value {
        COMPRESS_TYPE_NONE => "none",
        COMPRESS_TYPE_SNAPPY => "snappy",
        COMPRESS_TYPE_GZIP => "gzip",
        COMPRESS_TYPE_ZLIB => "zlib",
        COMPRESS_TYPE_LZ4 => "lz4",
        _ => "unknown",
    }
}

/// brpc's name of a checksum type.
pub fn checksum_type_name(value: i32) -> &'static str {
    match value {
        CHECKSUM_TYPE_NONE => "none",
        CHECKSUM_TYPE_CRC32C => "crc32c",
        _ => "unknown",
    }
}

/// How one side codes the bodies it sends: the raw numbers a program set,
/// checked when a body is coded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BodyCoding {
    /// A `COMPRESS_TYPE_*`.
    pub compress_type: i32,
    /// A `CHECKSUM_TYPE_*`.
    pub checksum_type: i32,
    /// The checksum covers the attachment too (after the body).
    pub checksum_with_attachment: bool,
}

impl BodyCoding {
    /// How the sender of `meta` coded its body.
    pub fn of(meta: &RpcMeta) -> BodyCoding {
        BodyCoding {
            compress_type: meta.compress_type(),
            checksum_type: meta.checksum_type(),
            checksum_with_attachment: meta.checksum_with_attachment(),
        }
    }
}

/// Why a body could not be coded or decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// A compress type without a codec here (LZ4, or not brpc's).
    UnsupportedCompression(i32),
    /// A checksum type other than none and CRC32C.
    UnsupportedChecksum(i32),
    /// A CRC32C value that is not 4 bytes.
    BadChecksumValue { len: usize },
    /// The body is not what its checksum says.
    ChecksumMismatch { expected: u32, actual: u32 },
    /// The body does not decompress.
    Corrupt { compress_type: i32, detail: String },
    /// Decompressed, the body would exceed the receiver's limit.
    TooLarge { compress_type: i32, limit: usize },
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::UnsupportedCompression(t) => {
                write!(f, "CompressType={t} ({}) is not supported", compress_type_name(*t))
            }
            BodyError::UnsupportedChecksum(t) => {
                write!(f, "ChecksumType={t} ({}) is not supported", checksum_type_name(*t))
            }
            BodyError::BadChecksumValue { len } => {
                write!(f, "a crc32c checksum_value of {len} bytes, not 4")
            }
            BodyError::ChecksumMismatch { expected, actual } => {
                write!(f, "crc32c checksum mismatch: the body has {actual:#010x}, the meta says {expected:#010x}")
            }
            BodyError::Corrupt { compress_type, detail } => {
                write!(f, "fail to decompress the {} body: {detail}", compress_type_name(*compress_type))
            }
            BodyError::TooLarge { compress_type, limit } => {
                write!(f, "the {} body decompresses to more than {limit} bytes", compress_type_name(*compress_type))
            }
        }
    }
}

impl std::error::Error for BodyError {}

/// Codes `body` as `coding` says and records how in `meta` (fields 3 and
/// 11–13). Returns the body to send before `attachment`. On `Err` the meta
/// is untouched.
pub fn encode_body(coding: BodyCoding, body: Bytes, attachment: &[u8], meta: &mut RpcMeta) -> Result<Bytes, BodyError> {
    let compression =
        Compression::from_wire(coding.compress_type).ok_or(BodyError::UnsupportedCompression(coding.compress_type))?;
    if !matches!(coding.checksum_type, CHECKSUM_TYPE_NONE | CHECKSUM_TYPE_CRC32C) {
        return Err(BodyError::UnsupportedChecksum(coding.checksum_type));
    }
    let body = compress(compression, body)?;
    meta.compress_type = Some(compression.wire());
    if coding.checksum_type == CHECKSUM_TYPE_CRC32C {
        let crc = crc32c_of(&body, coding.checksum_with_attachment.then_some(attachment));
        meta.checksum_type = Some(CHECKSUM_TYPE_CRC32C);
        meta.checksum_value = Some(Bytes::copy_from_slice(&mask(crc).to_be_bytes()));
        meta.checksum_with_attachment = coding.checksum_with_attachment.then_some(true);
    }
    Ok(body)
}

/// Verifies and decompresses a received body as its `meta` says, refusing
/// one that would decompress to more than `limit` bytes.
pub fn decode_body(meta: &RpcMeta, body: &Bytes, attachment: &[u8], limit: usize) -> Result<Bytes, BodyError> {
    verify_checksum(meta, body, attachment)?;
    let compress_type = meta.compress_type();
    let compression = Compression::from_wire(compress_type).ok_or(BodyError::UnsupportedCompression(compress_type))?;
    decompress(compression, body, limit)
}

fn verify_checksum(meta: &RpcMeta, body: &[u8], attachment: &[u8]) -> Result<(), BodyError> {
    match meta.checksum_type() {
        CHECKSUM_TYPE_NONE => Ok(()),
        CHECKSUM_TYPE_CRC32C => {
            let value = meta.checksum_value();
            let bytes: [u8; 4] = value.try_into().map_err(|_| BodyError::BadChecksumValue { len: value.len() })?;
            let expected = unmask(u32::from_be_bytes(bytes));
            let actual = crc32c_of(body, meta.checksum_with_attachment().then_some(attachment));
            if actual == expected {
                Ok(())
            } else {
                Err(BodyError::ChecksumMismatch { expected, actual })
            }
        }
        other => Err(BodyError::UnsupportedChecksum(other)),
    }
}

fn crc32c_of(body: &[u8], attachment: Option<&[u8]>) -> u32 {
    let crc = crc32c::crc32c(body);
    match attachment {
        Some(attachment) => crc32c::crc32c_append(crc, attachment),
        None => crc,
    }
}

const MASK_DELTA: u32 = 0xa282_ead8;

fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

fn unmask(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

fn compress(compression: Compression, body: Bytes) -> Result<Bytes, BodyError> {
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write;

    let corrupt =
        |e: &dyn fmt::Display| BodyError::Corrupt { compress_type: compression.wire(), detail: e.to_string() };
    match compression {
        Compression::None => Ok(body),
        Compression::Snappy => snap::raw::Encoder::new().compress_vec(&body).map(Bytes::from).map_err(|e| corrupt(&e)),
        Compression::Gzip => {
            let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&body).and_then(|()| encoder.finish()).map(Bytes::from).map_err(|e| corrupt(&e))
        }
        Compression::Zlib => {
            let mut encoder = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&body).and_then(|()| encoder.finish()).map(Bytes::from).map_err(|e| corrupt(&e))
        }
    }
}

fn decompress(compression: Compression, body: &Bytes, limit: usize) -> Result<Bytes, BodyError> {
    let compress_type = compression.wire();
    let corrupt = |e: &dyn fmt::Display| BodyError::Corrupt { compress_type, detail: e.to_string() };
    // An empty message serializes to nothing; a peer may send that
    // uncompressed whatever the meta says.
    if body.is_empty() {
        return Ok(Bytes::new());
    }
    match compression {
        Compression::None => Ok(body.clone()),
        Compression::Snappy => {
            let len = snap::raw::decompress_len(body).map_err(|e| corrupt(&e))?;
            if len > limit {
                return Err(BodyError::TooLarge { compress_type, limit });
            }
            snap::raw::Decoder::new().decompress_vec(body).map(Bytes::from).map_err(|e| corrupt(&e))
        }
        // A gzip body may hold several members, as protobuf's GzipInputStream reads it.
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(&body[..]), compress_type, limit),
        Compression::Zlib => read_bounded(flate2::read::ZlibDecoder::new(&body[..]), compress_type, limit),
    }
}

/// Reads a decoder to its end, at most `limit` bytes.
fn read_bounded(decoder: impl Read, compress_type: i32, limit: usize) -> Result<Bytes, BodyError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    decoder.take(cap).read_to_end(&mut out).map_err(|e| BodyError::Corrupt { compress_type, detail: e.to_string() })?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { compress_type, limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn text() -> Bytes {
        Bytes::from("the same words again and again, ".repeat(64))
    }

    fn coding(compress_type: i32, checksum_type: i32, with_attachment: bool) -> BodyCoding {
        BodyCoding { compress_type, checksum_type, checksum_with_attachment: with_attachment }
    }

    fn round_trip(coding: BodyCoding, body: Bytes, attachment: &[u8]) -> (RpcMeta, Bytes, Bytes) {
        let mut meta = RpcMeta::default();
        let sent = encode_body(coding, body, attachment, &mut meta).unwrap();
        let received = decode_body(&meta, &sent, attachment, LIMIT).unwrap();
        (meta, sent, received)
    }

    #[test]
    fn every_compression_round_trips_and_shrinks_repetitive_text() {
        for compress_type in [COMPRESS_TYPE_SNAPPY, COMPRESS_TYPE_GZIP, COMPRESS_TYPE_ZLIB] {
            let (meta, sent, received) = round_trip(coding(compress_type, 0, false), text(), b"");
            assert_eq!(meta.compress_type, Some(compress_type));
            assert!(sent.len() < text().len() / 4, "{} sent {} bytes", compress_type_name(compress_type), sent.len());
            assert_eq!(received, text());
        }
    }

    #[test]
    fn no_compression_sends_the_body_as_it_is_with_compress_type_zero() {
        let (meta, sent, received) = round_trip(BodyCoding::default(), text(), b"");
        assert_eq!(meta.compress_type, Some(0));
        assert_eq!(meta.checksum_type, None);
        assert_eq!(sent, text());
        assert_eq!(received, text());
    }

    #[test]
    fn the_formats_are_the_standard_ones() {
        let (_, snappy, _) = round_trip(coding(COMPRESS_TYPE_SNAPPY, 0, false), text(), b"");
        assert_eq!(snap::raw::decompress_len(&snappy).unwrap(), text().len());
        let (_, gzip, _) = round_trip(coding(COMPRESS_TYPE_GZIP, 0, false), text(), b"");
        assert_eq!(&gzip[..2], &[0x1f, 0x8b]);
        let (_, zlib, _) = round_trip(coding(COMPRESS_TYPE_ZLIB, 0, false), text(), b"");
        assert_eq!(zlib[0] & 0x0f, 8, "deflate method");
        assert_eq!(u16::from_be_bytes([zlib[0], zlib[1]]) % 31, 0, "zlib header check bits");
    }

    #[test]
    fn crc32c_is_sent_masked_and_big_endian_over_the_compressed_body() {
        let (meta, sent, _) = round_trip(coding(COMPRESS_TYPE_GZIP, CHECKSUM_TYPE_CRC32C, false), text(), b"att");
        assert_eq!(meta.checksum_type, Some(1));
        assert_eq!(meta.checksum_with_attachment, None);
        let value = meta.checksum_value.unwrap();
        let masked = u32::from_be_bytes(value[..].try_into().unwrap());
        assert_eq!(unmask(masked), crc32c::crc32c(&sent));
        assert_eq!(masked, crc32c::crc32c(&sent).rotate_right(15).wrapping_add(0xa282ead8));
    }

    #[test]
    fn mask_and_unmask_are_inverse() {
        for crc in [0, 1, 0xdead_beef, u32::MAX, 0xa282_ead8] {
            assert_eq!(unmask(mask(crc)), crc);
        }
        // The CRC32C check value of "123456789" (RFC 3720).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn a_checksum_with_attachment_covers_the_attachment() {
        let c = coding(COMPRESS_TYPE_NONE, CHECKSUM_TYPE_CRC32C, true);
        let (meta, sent, _) = round_trip(c, text(), b"attached");
        assert_eq!(meta.checksum_with_attachment, Some(true));
        let err = decode_body(&meta, &sent, b"attacheD", LIMIT).unwrap_err();
        assert!(matches!(err, BodyError::ChecksumMismatch { .. }), "{err}");
    }

    #[test]
    fn a_checksum_without_attachment_ignores_the_attachment() {
        let c = coding(COMPRESS_TYPE_SNAPPY, CHECKSUM_TYPE_CRC32C, false);
        let (meta, sent, _) = round_trip(c, text(), b"attached");
        assert_eq!(decode_body(&meta, &sent, b"anything else", LIMIT).unwrap(), text());
    }

    #[test]
    fn a_corrupted_body_fails_its_checksum_with_both_values_in_the_text() {
        for compress_type in [COMPRESS_TYPE_NONE, COMPRESS_TYPE_SNAPPY, COMPRESS_TYPE_GZIP, COMPRESS_TYPE_ZLIB] {
            let mut meta = RpcMeta::default();
            let sent = encode_body(coding(compress_type, CHECKSUM_TYPE_CRC32C, false), text(), b"", &mut meta).unwrap();
            let mut bad = sent.to_vec();
            let middle = bad.len() / 2;
            bad[middle] ^= 0x01;
            let err = decode_body(&meta, &Bytes::from(bad), b"", LIMIT).unwrap_err();
            assert!(matches!(err, BodyError::ChecksumMismatch { .. }), "{err}");
            assert!(err.to_string().contains("checksum mismatch"), "{err}");
        }
    }

    #[test]
    fn a_checksum_value_of_the_wrong_size_is_an_error() {
        for value in [&b""[..], b"abc", b"abcde"] {
            let meta = RpcMeta {
                checksum_type: Some(CHECKSUM_TYPE_CRC32C),
                checksum_value: Some(Bytes::copy_from_slice(value)),
                ..Default::default()
            };
            let err = decode_body(&meta, &text(), b"", LIMIT).unwrap_err();
            assert_eq!(err, BodyError::BadChecksumValue { len: value.len() });
        }
    }

    #[test]
    fn an_unknown_checksum_type_is_refused_both_ways() {
        let meta = RpcMeta { checksum_type: Some(7), ..Default::default() };
        assert_eq!(decode_body(&meta, &text(), b"", LIMIT), Err(BodyError::UnsupportedChecksum(7)));
        let mut meta = RpcMeta::default();
        assert_eq!(encode_body(coding(0, 7, false), text(), b"", &mut meta), Err(BodyError::UnsupportedChecksum(7)));
        assert_eq!(meta, RpcMeta::default());
    }

    #[test]
    fn lz4_and_unknown_compress_types_are_refused_with_their_name() {
        let mut meta = RpcMeta::default();
        let err = encode_body(coding(COMPRESS_TYPE_LZ4, 0, false), text(), b"", &mut meta).unwrap_err();
        assert_eq!(err, BodyError::UnsupportedCompression(4));
        assert!(err.to_string().contains("lz4"), "{err}");
        let meta = RpcMeta { compress_type: Some(99), ..Default::default() };
        assert_eq!(decode_body(&meta, &text(), b"", LIMIT), Err(BodyError::UnsupportedCompression(99)));
    }

    #[test]
    fn garbage_labelled_compressed_is_an_error_not_a_panic() {
        let garbage = Bytes::from_static(b"\xff\xfe\xfd this is not compressed at all \x00\x01");
        for compress_type in [COMPRESS_TYPE_SNAPPY, COMPRESS_TYPE_GZIP, COMPRESS_TYPE_ZLIB] {
            let meta = RpcMeta { compress_type: Some(compress_type), ..Default::default() };
            let err = decode_body(&meta, &garbage, b"", LIMIT).unwrap_err();
            // Snappy reads the leading bytes as a length first: too large.
            let refused = matches!(err, BodyError::Corrupt { .. } | BodyError::TooLarge { .. });
            assert!(refused, "{}: {err}", compress_type_name(compress_type));
        }
    }

    #[test]
    fn a_truncated_compressed_body_is_an_error() {
        for compress_type in [COMPRESS_TYPE_SNAPPY, COMPRESS_TYPE_GZIP, COMPRESS_TYPE_ZLIB] {
            let mut meta = RpcMeta::default();
            let sent = encode_body(coding(compress_type, 0, false), text(), b"", &mut meta).unwrap();
            let cut = sent.slice(..sent.len() - 3);
            assert!(decode_body(&meta, &cut, b"", LIMIT).is_err(), "{}", compress_type_name(compress_type));
        }
    }

    #[test]
    fn a_body_that_decompresses_beyond_the_limit_is_refused() {
        let big = Bytes::from(vec![0u8; 64 * 1024]);
        for compress_type in [COMPRESS_TYPE_SNAPPY, COMPRESS_TYPE_GZIP, COMPRESS_TYPE_ZLIB] {
            let mut meta = RpcMeta::default();
            let sent = encode_body(coding(compress_type, 0, false), big.clone(), b"", &mut meta).unwrap();
            assert_eq!(decode_body(&meta, &sent, b"", 1000), Err(BodyError::TooLarge { compress_type, limit: 1000 }));
            assert_eq!(decode_body(&meta, &sent, b"", big.len()).unwrap(), big);
        }
    }

    #[test]
    fn an_empty_body_round_trips_under_every_compression() {
        for compress_type in [COMPRESS_TYPE_NONE, COMPRESS_TYPE_SNAPPY, COMPRESS_TYPE_GZIP, COMPRESS_TYPE_ZLIB] {
            let (_, _, received) = round_trip(coding(compress_type, CHECKSUM_TYPE_CRC32C, true), Bytes::new(), b"x");
            assert!(received.is_empty());
        }
    }

    #[test]
    fn a_gzip_body_of_two_members_reads_whole() {
        let mut meta = RpcMeta::default();
        let first = encode_body(coding(COMPRESS_TYPE_GZIP, 0, false), Bytes::from("abc"), b"", &mut meta).unwrap();
        let second = encode_body(coding(COMPRESS_TYPE_GZIP, 0, false), Bytes::from("def"), b"", &mut meta).unwrap();
        let both = Bytes::from([first, second].concat());
        assert_eq!(decode_body(&meta, &both, b"", LIMIT).unwrap(), Bytes::from("abcdef"));
    }
}
