//! The wire format (Avro single-object encoding of commands and state records), without Python types.
//!
//! One layout per schema, written for the parsing canonical forms below; the Python side computes the fingerprints
//! of the schema files and hands them in (`check_fingerprints`), so a changed schema file can never be read or
//! written with a stale layout here. Records of any other writer schema are the caller's (fastavro resolves them).
//!
//! Decoding borrows from the input: strings and bytes are slices of the record. It is stricter than fastavro in
//! a few ways that are never valid Avro of these schemas (see `ErrorKind::stricter_than_fastavro`).

use std::fmt;

pub const MAGIC: [u8; 2] = [0xC3, 0x01];
/// Magic and the 8-byte CRC-64-AVRO fingerprint.
pub const HEADER_LEN: usize = 10;

/// The parsing canonical form of schemas/command.avsc this layout is written for.
pub const COMMAND_CANONICAL: &str = concat!(
    r#"{"name":"io.kafkascheduler.v1.Command","type":"record","fields":[{"name":"body","type":[{"name":"#,
    r#""io.kafkascheduler.v1.Schedule","type":"record","fields":[{"name":"id","type":"string"},{"name":"#,
    r#""target_topic","type":"string"},{"name":"target_key","type":["null","bytes"]},{"name":"#,
    r#""target_partition","type":["null","int"]},{"name":"payload","type":["null","bytes"]},{"name":"#,
    r#""headers","type":{"type":"array","items":{"name":"io.kafkascheduler.v1.Header","type":"record","#,
    r#""fields":[{"name":"name","type":"string"},{"name":"value","type":["null","bytes"]}]}}},{"name":"#,
    r#""deliver_at","type":"long"},{"name":"created_at","type":"long"},{"name":"producer","type":["null","#,
    r#""string"]}]},{"name":"io.kafkascheduler.v1.Cancel","type":"record","fields":[{"name":"id","type":"#,
    r#""string"}]}]}]}"#
);

/// The parsing canonical form of schemas/state.avsc this layout is written for.
pub const STATE_CANONICAL: &str = concat!(
    r#"{"name":"io.kafkascheduler.state.v1.ScheduleState","type":"record","fields":[{"name":"due_ms","#,
    r#""type":"long"},{"name":"version","type":"long"},{"name":"id","type":"string"},{"name":"target_topic","#,
    r#""type":"string"},{"name":"target_key","type":["null","bytes"]},{"name":"target_partition","type":"#,
    r#"["null","int"]},{"name":"payload","type":["null","bytes"]},{"name":"headers","type":{"type":"array","#,
    r#""items":{"name":"io.kafkascheduler.state.v1.Header","type":"record","fields":[{"name":"name","type":"#,
    r#""string"},{"name":"value","type":["null","bytes"]}]}}},{"name":"created_ms","type":"long"},{"name":"#,
    r#""producer","type":["null","string"]}]}"#
);

pub const COMMAND_FINGERPRINT: [u8; 8] = fingerprint(COMMAND_CANONICAL.as_bytes());
pub const STATE_FINGERPRINT: [u8; 8] = fingerprint(STATE_CANONICAL.as_bytes());

const CRC64_EMPTY: u64 = 0xc15d_213a_a4d7_a795;
const CRC64_TABLE: [u64; 256] = crc64_table();

const fn crc64_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (CRC64_EMPTY & (fp & 1).wrapping_neg());
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

/// CRC-64-AVRO (the Avro spec's Rabin fingerprint) of `data`, as the 8 little-endian bytes the header carries.
pub const fn fingerprint(data: &[u8]) -> [u8; 8] {
    let mut fp = CRC64_EMPTY;
    let mut i = 0;
    while i < data.len() {
        fp = (fp >> 8) ^ CRC64_TABLE[((fp ^ data[i] as u64) & 0xff) as usize];
        i += 1;
    }
    fp.to_le_bytes()
}

/// Which of the two schemas a fingerprint check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Command,
    State,
}

/// Ok when the fingerprints computed from the schema files are the ones this layout was written for.
pub fn check_fingerprints(command: &[u8], state: &[u8]) -> Result<(), String> {
    for (which, given, ours) in [
        ("command", command, COMMAND_FINGERPRINT),
        ("state", state, STATE_FINGERPRINT),
    ] {
        if given != ours {
            return Err(format!(
                "schemas/{which}.avsc has fingerprint {} but the native codec is written for {}: update \
                 native/src/codec.rs (layout and {}_CANONICAL) with the schema, and keep the old schema in \
                 schemas/history/",
                hex(given),
                hex(&ours),
                which.to_uppercase()
            ));
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a record does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No C3 01 magic, or shorter than the header.
    NotSingleObject,
    /// The fingerprint is not the current schema's (an older writer's, or unknown).
    UnknownFingerprint,
    /// The record ends inside a value.
    Truncated,
    /// A varint of more than 10 bytes, or one whose value does not fit 64 bits.
    VarintTooLong,
    /// A bytes or string length below zero.
    NegativeLength,
    /// A bytes or string length past the end of the record.
    LengthPastEnd,
    /// A union branch other than 0 or 1.
    BadUnion,
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// An `int` field outside the 32-bit range.
    IntOutOfRange,
    /// Bytes left after the record.
    TrailingBytes,
}

impl ErrorKind {
    /// fastavro reads these without complaint (it wraps the value or indexes the union from the end); they are
    /// never the output of a correct writer of these schemas.
    pub fn stricter_than_fastavro(self) -> bool {
        matches!(
            self,
            Self::VarintTooLong | Self::NegativeLength | Self::BadUnion | Self::IntOutOfRange
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub kind: ErrorKind,
    /// Byte offset in the record where the bad value starts.
    pub at: usize,
    pub detail: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.detail, self.at)
    }
}

impl std::error::Error for DecodeError {}

fn error(kind: ErrorKind, at: usize, detail: impl Into<String>) -> DecodeError {
    DecodeError {
        kind,
        at,
        detail: detail.into(),
    }
}

pub type Header<'a> = (&'a str, Option<&'a [u8]>);

/// A schedule as both schemas carry it; strings and bytes borrow from the record (decoding) or the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule<'a> {
    pub id: &'a str,
    pub target_topic: &'a str,
    pub due_ms: i64,
    pub payload: Option<&'a [u8]>,
    pub target_key: Option<&'a [u8]>,
    pub headers: Vec<Header<'a>>,
    pub target_partition: Option<i32>,
    pub created_ms: i64,
    pub producer: Option<&'a str>,
}

/// The body of a command envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Schedule(Schedule<'a>),
    Cancel(&'a str),
}

// --- writing ---

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_long(out: &mut Vec<u8>, n: i64) {
    put_varint(out, ((n << 1) ^ (n >> 63)) as u64);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

fn put_opt_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.push(0),
        Some(b) => {
            out.push(2);
            put_bytes(out, b);
        }
    }
}

/// id, target_topic, target_key, target_partition, payload, headers: the order both schemas share.
fn put_shared(out: &mut Vec<u8>, s: &Schedule<'_>) {
    put_bytes(out, s.id.as_bytes());
    put_bytes(out, s.target_topic.as_bytes());
    put_opt_bytes(out, s.target_key);
    match s.target_partition {
        None => out.push(0),
        Some(p) => {
            out.push(2);
            put_long(out, i64::from(p));
        }
    }
    put_opt_bytes(out, s.payload);
    if !s.headers.is_empty() {
        put_long(out, s.headers.len() as i64);
        for (name, value) in &s.headers {
            put_bytes(out, name.as_bytes());
            put_opt_bytes(out, *value);
        }
    }
    out.push(0);
}

fn size_hint(s: &Schedule<'_>) -> usize {
    let headers: usize = s
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.map_or(0, <[u8]>::len) + 12)
        .sum();
    HEADER_LEN
        + 64
        + s.id.len()
        + s.target_topic.len()
        + s.target_key.map_or(0, <[u8]>::len)
        + s.payload.map_or(0, <[u8]>::len)
        + s.producer.map_or(0, str::len)
        + headers
}

/// The command envelope of a schedule (union branch 0).
pub fn encode_schedule(s: &Schedule<'_>, fp: &[u8; 8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint(s));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(fp);
    out.push(0);
    put_shared(&mut out, s);
    put_long(&mut out, s.due_ms);
    put_long(&mut out, s.created_ms);
    put_opt_bytes(&mut out, s.producer.map(str::as_bytes));
    out
}

/// The command envelope of a cancel (union branch 1).
pub fn encode_cancel(id: &str, fp: &[u8; 8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 6 + id.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(fp);
    out.push(2);
    put_bytes(&mut out, id.as_bytes());
    out
}

/// The state record of a pending schedule; `version` is the input offset that created it.
pub fn encode_state(s: &Schedule<'_>, version: i64, fp: &[u8; 8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint(s));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(fp);
    put_long(&mut out, s.due_ms);
    put_long(&mut out, version);
    put_shared(&mut out, s);
    put_long(&mut out, s.created_ms);
    put_opt_bytes(&mut out, s.producer.map(str::as_bytes));
    out
}

// --- reading ---

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn long(&mut self) -> Result<i64, DecodeError> {
        let start = self.pos;
        let mut result: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(error(
                    ErrorKind::Truncated,
                    start,
                    "the record ends inside a varint",
                ));
            };
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(error(
                    ErrorKind::VarintTooLong,
                    start,
                    "varint longer than 64 bits",
                ));
            }
            result |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(((result >> 1) as i64) ^ -((result & 1) as i64));
            }
            shift += 7;
        }
    }

    fn int(&mut self) -> Result<i32, DecodeError> {
        let start = self.pos;
        let n = self.long()?;
        i32::try_from(n).map_err(|_| {
            error(
                ErrorKind::IntOutOfRange,
                start,
                format!("int {n} out of range"),
            )
        })
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let size = self.long()?;
        if size < 0 {
            return Err(error(
                ErrorKind::NegativeLength,
                start,
                format!("negative length {size}"),
            ));
        }
        let rest = self.buf.len() - self.pos;
        if size as u64 > rest as u64 {
            let detail = format!("length {size} past the end of the record ({rest} bytes left)");
            return Err(error(ErrorKind::LengthPastEnd, start, detail));
        }
        let out = &self.buf[self.pos..self.pos + size as usize];
        self.pos += size as usize;
        Ok(out)
    }

    fn string(&mut self) -> Result<&'a str, DecodeError> {
        let start = self.pos;
        let raw = self.bytes()?;
        std::str::from_utf8(raw).map_err(|e| {
            error(
                ErrorKind::InvalidUtf8,
                start,
                format!("string is not UTF-8: {e}"),
            )
        })
    }

    /// A ["null", X] union: true when X follows (a padded varint index is still legal Avro).
    fn present(&mut self) -> Result<bool, DecodeError> {
        let start = self.pos;
        match self.long()? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(error(
                ErrorKind::BadUnion,
                start,
                format!("union branch {n} out of range"),
            )),
        }
    }

    fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        Ok(if self.present()? {
            Some(self.bytes()?)
        } else {
            None
        })
    }

    fn headers(&mut self) -> Result<Vec<Header<'a>>, DecodeError> {
        let mut headers = Vec::new();
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(headers);
            }
            if count < 0 {
                self.long()?; // a block with its size in bytes first
            }
            for _ in 0..count.unsigned_abs() {
                let name = self.string()?;
                headers.push((name, self.opt_bytes()?));
            }
        }
    }

    fn shared(&mut self, due_ms: i64) -> Result<Schedule<'a>, DecodeError> {
        let id = self.string()?;
        let target_topic = self.string()?;
        let target_key = self.opt_bytes()?;
        let target_partition = if self.present()? {
            Some(self.int()?)
        } else {
            None
        };
        let payload = self.opt_bytes()?;
        let headers = self.headers()?;
        Ok(Schedule {
            id,
            target_topic,
            due_ms,
            payload,
            target_key,
            headers,
            target_partition,
            created_ms: 0,
            producer: None,
        })
    }

    fn producer(&mut self) -> Result<Option<&'a str>, DecodeError> {
        Ok(if self.present()? {
            Some(self.string()?)
        } else {
            None
        })
    }

    fn end(&self) -> Result<(), DecodeError> {
        let left = self.buf.len() - self.pos;
        if left != 0 {
            return Err(error(
                ErrorKind::TrailingBytes,
                self.pos,
                format!("{left} trailing bytes after the Avro body"),
            ));
        }
        Ok(())
    }
}

/// A reader past the header when `value` is single-object encoded with fingerprint `fp`.
fn body<'a>(value: &'a [u8], fp: &[u8; 8]) -> Result<Reader<'a>, DecodeError> {
    if value.len() < HEADER_LEN || value[..2] != MAGIC {
        return Err(error(
            ErrorKind::NotSingleObject,
            0,
            "not Avro single-object encoding (no C3 01 header)",
        ));
    }
    if value[2..HEADER_LEN] != fp[..] {
        let detail = format!(
            "schema fingerprint {} is not the current one",
            hex(&value[2..HEADER_LEN])
        );
        return Err(error(ErrorKind::UnknownFingerprint, 2, detail));
    }
    Ok(Reader {
        buf: value,
        pos: HEADER_LEN,
    })
}

/// A command envelope of the current command schema.
pub fn decode_command<'a>(value: &'a [u8], fp: &[u8; 8]) -> Result<Command<'a>, DecodeError> {
    let mut r = body(value, fp)?;
    let start = r.pos;
    let command = match r.long()? {
        0 => {
            let mut s = r.shared(0)?;
            s.due_ms = r.long()?;
            s.created_ms = r.long()?;
            s.producer = r.producer()?;
            Command::Schedule(s)
        }
        1 => Command::Cancel(r.string()?),
        n => {
            return Err(error(
                ErrorKind::BadUnion,
                start,
                format!("union branch {n} out of range"),
            ))
        }
    };
    r.end()?;
    Ok(command)
}

/// A state record of the current state schema: (schedule, version).
pub fn decode_state<'a>(value: &'a [u8], fp: &[u8; 8]) -> Result<(Schedule<'a>, i64), DecodeError> {
    let mut r = body(value, fp)?;
    let due = r.long()?;
    let version = r.long()?;
    let mut s = r.shared(due)?;
    s.created_ms = r.long()?;
    s.producer = r.producer()?;
    r.end()?;
    Ok((s, version))
}

/// The due time, the first field of every state schema, without reading the rest (any fingerprint).
pub fn peek_due_ms(value: &[u8]) -> Result<i64, DecodeError> {
    if value.len() < 2 || value[..2] != MAGIC {
        return Err(error(
            ErrorKind::NotSingleObject,
            0,
            "state record is not Avro single-object encoded",
        ));
    }
    let mut r = Reader {
        buf: value,
        pos: HEADER_LEN.min(value.len()),
    };
    if value.len() < HEADER_LEN {
        return Err(error(
            ErrorKind::Truncated,
            value.len(),
            "the record ends inside its header",
        ));
    }
    r.long()
}

/// Kafka's rule for a topic name: 1..249 of [a-zA-Z0-9._-], not "." or "..".
pub fn is_legal_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests;
