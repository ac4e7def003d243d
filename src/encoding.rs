//! Messages in the database's encoding.
//!
//! stage_norm builds its messages in Rust, as UTF-8, from two parts: its own text, which is
//! ASCII, and what users wrote (a rejected value, a table or column name), which PostgreSQL
//! holds in the database's encoding. PostgreSQL converts a message from the database's encoding
//! to the client's, so every message must be valid in the database's encoding:
//! - [`text_of`] turns bytes in the database's encoding into text for a message: converted to
//!   UTF-8 (lossless for valid text); bytes that are not valid in the encoding are shown as
//!   `\xNN`;
//! - [`server_bytes`] / [`to_server`] turn a finished message back into the database's
//!   encoding, for the messages stage_norm throws itself (the trigger's WARNINGs, its 23514,
//!   its log lines); a character the encoding cannot hold is written `\u{XXXX}`;
//! - [`for_report`] is for messages raised through pgrx's `ErrorReport`, which passes a Rust
//!   string to the server as it is: the message itself in a UTF8 or SQL_ASCII database, and
//!   in any other encoding its non-ASCII characters as `\u{XXXX}` (ASCII is valid in every
//!   server encoding PostgreSQL supports).
//!
//! In a UTF8 database (the common case) and for ASCII text nothing is converted.
use std::ffi::c_char;

use pgrx::pg_sys;

const UTF8: i32 = pg_sys::pg_enc::PG_UTF8 as i32;
const SQL_ASCII: i32 = pg_sys::pg_enc::PG_SQL_ASCII as i32;

fn database_encoding() -> i32 {
    // SAFETY: reads a global set at backend start; cannot raise.
    unsafe { pg_sys::GetDatabaseEncoding() }
}

/// Is the database's encoding one whose bytes pass to the client as they are for UTF-8 text
/// (UTF8, or SQL_ASCII, which converts nothing)?
fn passes_utf8() -> bool {
    let enc = database_encoding();
    enc == UTF8 || enc == SQL_ASCII
}

/// `bytes` as text, invalid UTF-8 shown as `\xNN` per byte.
fn escape_invalid_utf8(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\0', "\\x00"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Converts `src` from encoding `from` to `to`; returns the converted bytes and how many bytes
/// of `src` were converted (all of them unless a character is invalid or has no equivalent).
unsafe fn convert(src: &[u8], from: i32, to: i32) -> (Vec<u8>, usize) {
    let proc_ = pg_sys::FindDefaultConversionProc(from, to);
    if proc_ == pg_sys::InvalidOid {
        return (Vec::new(), 0);
    }
    // MAX_CONVERSION_GROWTH is 4; one more for the terminating NUL.
    let mut dest = vec![0u8; src.len() * 4 + 1];
    let mut srcbuf = src.to_vec();
    let done = pg_sys::pg_do_encoding_conversion_buf(
        proc_,
        from,
        to,
        srcbuf.as_mut_ptr(),
        srcbuf.len() as i32,
        dest.as_mut_ptr(),
        dest.len() as i32,
        true,
    );
    let done = (done.max(0) as usize).min(src.len());
    let len = dest.iter().position(|&b| b == 0).unwrap_or(dest.len());
    dest.truncate(len);
    (dest, done)
}

/// Bytes in the database's encoding (a value, a name) as text for a message.
pub fn text_of(bytes: &[u8]) -> String {
    if bytes.is_ascii() && !bytes.contains(&0) {
        // SAFETY: ASCII is UTF-8.
        return unsafe { String::from_utf8_unchecked(bytes.to_vec()) };
    }
    let enc = database_encoding();
    if enc == UTF8 || enc == SQL_ASCII {
        return escape_invalid_utf8(bytes);
    }
    let mut out = String::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        // SAFETY: a conversion with noError; converts what it can and says how far it got.
        let (converted, done) = unsafe { convert(rest, enc, UTF8) };
        out.push_str(&escape_invalid_utf8(&converted));
        rest = &rest[done..];
        if let Some((b, tail)) = rest.split_first() {
            out.push_str(&format!("\\x{b:02x}"));
            rest = tail;
        }
    }
    out
}

/// A message (UTF-8) as bytes in the database's encoding, without NUL bytes.
pub fn server_bytes(s: &str) -> Vec<u8> {
    let s = s.replace('\0', "");
    if s.is_ascii() || passes_utf8() {
        return s.into_bytes();
    }
    let enc = database_encoding();
    let mut out = Vec::with_capacity(s.len());
    for ch in s.chars() {
        if ch.is_ascii() {
            out.push(ch as u8);
            continue;
        }
        let mut buf = [0u8; 4];
        let utf8 = ch.encode_utf8(&mut buf).as_bytes();
        // SAFETY: a conversion with noError.
        let (converted, done) = unsafe { convert(utf8, UTF8, enc) };
        if done == utf8.len() && !converted.is_empty() {
            out.extend_from_slice(&converted);
        } else {
            out.extend_from_slice(format!("\\u{{{:04x}}}", ch as u32).as_bytes());
        }
    }
    out
}

/// A message (UTF-8) as a palloc'd C string in the database's encoding.
///
/// # Safety
/// In a transaction (palloc in the current memory context).
pub unsafe fn to_server(s: &str) -> *mut c_char {
    let bytes = server_bytes(s);
    let p = pg_sys::palloc(bytes.len() + 1).cast::<u8>();
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len());
    *p.add(bytes.len()) = 0;
    p.cast()
}

/// A message for pgrx's `ErrorReport` (see the module comment).
pub fn for_report(s: String) -> String {
    if s.is_ascii() || passes_utf8() {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if ch.is_ascii() {
            out.push(ch);
        } else {
            out.push_str(&format!("\\u{{{:04x}}}", ch as u32));
        }
    }
    out
}

/// Longest stretch of a rejected value quoted in a message.
pub const QUOTE_CHARS: usize = 64;

/// A value for a message: as text (bytes not valid in the database's encoding as `\xNN`), its
/// first `QUOTE_CHARS` characters, then "..." when there are more.
pub fn quote(value: &[u8]) -> String {
    // At most 4 bytes a character in any server encoding: no need to convert more.
    let s = text_of(&value[..value.len().min(4 * (QUOTE_CHARS + 1))]);
    let mut out: String = s.chars().take(QUOTE_CHARS).collect();
    if s.chars().nth(QUOTE_CHARS).is_some() || value.len() > 4 * (QUOTE_CHARS + 1) {
        out.push_str("...");
    }
    out
}
