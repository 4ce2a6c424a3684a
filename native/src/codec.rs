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
    r#""target_topic","type":"string"},{"name":"target_key","type":["null","bytes"]},{"name":"target_pa"#,
    r#"rtition","type":["null","int"]},{"name":"payload","type":["null","bytes"]},{"name":"headers","ty"#,
    r#"pe":{"type":"array","items":{"name":"io.kafkascheduler.v1.Header","type":"record","fields":[{"na"#,
    r#"me":"name","type":"string"},{"name":"value","type":["null","bytes"]}]}}},{"name":"deliver_at","t"#,
    r#"ype":"long"},{"name":"created_at","type":"long"},{"name":"producer","type":["null","string"]},{""#,
    r#"name":"recurrence","type":["null",{"name":"io.kafkascheduler.v1.Recurrence","type":"record","fie"#,
    r#"lds":[{"name":"cron","type":["null","string"]},{"name":"every_ms","type":["null","long"]},{"name"#,
    r#"":"after_ms","type":["null","long"]},{"name":"timezone","type":"string"},{"name":"starts_at","ty"#,
    r#"pe":["null","long"]},{"name":"ends_at","type":["null","long"]},{"name":"max_runs","type":["null""#,
    r#","long"]},{"name":"missed","type":"string"},{"name":"overlap","type":"string"},{"name":"catch_up"#,
    r#"_ms","type":["null","long"]},{"name":"paused","type":"boolean"},{"name":"occurrence_ms","type":""#,
    r#"long"},{"name":"runs","type":"long"},{"name":"skipped","type":"long"},{"name":"running_ms","type"#,
    r#"":["null","long"]},{"name":"buffered_ms","type":["null","long"]}]}]}]},{"name":"io.kafkaschedule"#,
    r#"r.v1.Cancel","type":"record","fields":[{"name":"id","type":"string"}]},{"name":"io.kafkaschedule"#,
    r#"r.v1.Pause","type":"record","fields":[{"name":"id","type":"string"}]},{"name":"io.kafkascheduler"#,
    r#".v1.Resume","type":"record","fields":[{"name":"id","type":"string"}]},{"name":"io.kafkascheduler"#,
    r#".v1.Done","type":"record","fields":[{"name":"id","type":"string"},{"name":"fire_id","type":"stri"#,
    r#"ng"},{"name":"finished_at","type":"long"}]},{"name":"io.kafkascheduler.v1.Backfill","type":"reco"#,
    r#"rd","fields":[{"name":"id","type":"string"},{"name":"from_ms","type":"long"},{"name":"to_ms","ty"#,
    r#"pe":"long"}]}]}]}"#,
);

/// The parsing canonical form of schemas/state.avsc this layout is written for.
pub const STATE_CANONICAL: &str = concat!(
    r#"{"name":"io.kafkascheduler.state.v1.ScheduleState","type":"record","fields":[{"name":"due_ms","t"#,
    r#"ype":"long"},{"name":"version","type":"long"},{"name":"id","type":"string"},{"name":"target_topi"#,
    r#"c","type":"string"},{"name":"target_key","type":["null","bytes"]},{"name":"target_partition","ty"#,
    r#"pe":["null","int"]},{"name":"payload","type":["null","bytes"]},{"name":"headers","type":{"type":"#,
    r#""array","items":{"name":"io.kafkascheduler.state.v1.Header","type":"record","fields":[{"name":"n"#,
    r#"ame","type":"string"},{"name":"value","type":["null","bytes"]}]}}},{"name":"created_ms","type":""#,
    r#"long"},{"name":"producer","type":["null","string"]},{"name":"recurrence","type":["null",{"name":"#,
    r#""io.kafkascheduler.v1.Recurrence","type":"record","fields":[{"name":"cron","type":["null","strin"#,
    r#"g"]},{"name":"every_ms","type":["null","long"]},{"name":"after_ms","type":["null","long"]},{"nam"#,
    r#"e":"timezone","type":"string"},{"name":"starts_at","type":["null","long"]},{"name":"ends_at","ty"#,
    r#"pe":["null","long"]},{"name":"max_runs","type":["null","long"]},{"name":"missed","type":"string""#,
    r#"},{"name":"overlap","type":"string"},{"name":"catch_up_ms","type":["null","long"]},{"name":"paus"#,
    r#"ed","type":"boolean"},{"name":"occurrence_ms","type":"long"},{"name":"runs","type":"long"},{"nam"#,
    r#"e":"skipped","type":"long"},{"name":"running_ms","type":["null","long"]},{"name":"buffered_ms",""#,
    r#"type":["null","long"]}]}]}]}"#,
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
    /// A boolean byte other than 0 or 1.
    BadBoolean,
}

impl ErrorKind {
    /// fastavro reads these without complaint (it wraps the value or indexes the union from the end); they are
    /// never the output of a correct writer of these schemas.
    pub fn stricter_than_fastavro(self) -> bool {
        matches!(
            self,
            Self::VarintTooLong
                | Self::NegativeLength
                | Self::BadUnion
                | Self::IntOutOfRange
                | Self::BadBoolean
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

/// How a schedule repeats (io.kafkascheduler.v1.Recurrence, the same in both schemas): the spec, then the
/// scheduler's state of it (from `occurrence_ms` on). The words are the caller's to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recurrence<'a> {
    pub cron: Option<&'a str>,
    pub every_ms: Option<i64>,
    pub after_ms: Option<i64>,
    pub timezone: &'a str,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub max_runs: Option<i64>,
    pub missed: &'a str,
    pub overlap: &'a str,
    pub catch_up_ms: Option<i64>,
    pub paused: bool,
    pub occurrence_ms: i64,
    pub runs: i64,
    pub skipped: i64,
    pub running_ms: Option<i64>,
    pub buffered_ms: Option<i64>,
}

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
    pub recurrence: Option<Recurrence<'a>>,
}

/// The body of a command envelope, one variant per union branch in order.
// A decoded command lives briefly on the stack: boxing the schedule would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Schedule(Schedule<'a>),
    Cancel(&'a str),
    Pause(&'a str),
    Resume(&'a str),
    Done {
        id: &'a str,
        fire_id: &'a str,
        finished_ms: i64,
    },
    Backfill {
        id: &'a str,
        from_ms: i64,
        to_ms: i64,
    },
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

fn put_opt_long(out: &mut Vec<u8>, n: Option<i64>) {
    match n {
        None => out.push(0),
        Some(n) => {
            out.push(2);
            put_long(out, n);
        }
    }
}

/// The last field of both schemas: ["null", Recurrence].
fn put_recurrence(out: &mut Vec<u8>, r: Option<&Recurrence<'_>>) {
    let Some(r) = r else {
        out.push(0);
        return;
    };
    out.push(2);
    put_opt_bytes(out, r.cron.map(str::as_bytes));
    put_opt_long(out, r.every_ms);
    put_opt_long(out, r.after_ms);
    put_bytes(out, r.timezone.as_bytes());
    put_opt_long(out, r.starts_at);
    put_opt_long(out, r.ends_at);
    put_opt_long(out, r.max_runs);
    put_bytes(out, r.missed.as_bytes());
    put_bytes(out, r.overlap.as_bytes());
    put_opt_long(out, r.catch_up_ms);
    out.push(u8::from(r.paused));
    put_long(out, r.occurrence_ms);
    put_long(out, r.runs);
    put_long(out, r.skipped);
    put_opt_long(out, r.running_ms);
    put_opt_long(out, r.buffered_ms);
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
        + s.recurrence.as_ref().map_or(0, |r| {
            120 + r.cron.map_or(0, str::len) + r.timezone.len() + r.missed.len() + r.overlap.len()
        })
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
    put_recurrence(&mut out, s.recurrence.as_ref());
    out
}

/// The command envelope of a cancel (union branch 1).
pub fn encode_cancel(id: &str, fp: &[u8; 8]) -> Vec<u8> {
    encode_control(&Command::Cancel(id), fp)
}

/// The command envelope of any command but a schedule (union branches 1 to 5).
pub fn encode_control(command: &Command<'_>, fp: &[u8; 8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 48);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(fp);
    match command {
        Command::Schedule(s) => return encode_schedule(s, fp),
        Command::Cancel(id) | Command::Pause(id) | Command::Resume(id) => {
            let branch = match command {
                Command::Cancel(_) => 1,
                Command::Pause(_) => 2,
                _ => 3,
            };
            put_long(&mut out, branch);
            put_bytes(&mut out, id.as_bytes());
        }
        Command::Done {
            id,
            fire_id,
            finished_ms,
        } => {
            put_long(&mut out, 4);
            put_bytes(&mut out, id.as_bytes());
            put_bytes(&mut out, fire_id.as_bytes());
            put_long(&mut out, *finished_ms);
        }
        Command::Backfill { id, from_ms, to_ms } => {
            put_long(&mut out, 5);
            put_bytes(&mut out, id.as_bytes());
            put_long(&mut out, *from_ms);
            put_long(&mut out, *to_ms);
        }
    }
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
    put_recurrence(&mut out, s.recurrence.as_ref());
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

    fn opt_long(&mut self) -> Result<Option<i64>, DecodeError> {
        Ok(if self.present()? {
            Some(self.long()?)
        } else {
            None
        })
    }

    fn opt_string(&mut self) -> Result<Option<&'a str>, DecodeError> {
        Ok(if self.present()? {
            Some(self.string()?)
        } else {
            None
        })
    }

    fn boolean(&mut self) -> Result<bool, DecodeError> {
        let start = self.pos;
        match self.buf.get(self.pos) {
            None => Err(error(
                ErrorKind::Truncated,
                start,
                "the record ends inside a boolean",
            )),
            Some(&b) if b <= 1 => {
                self.pos += 1;
                Ok(b == 1)
            }
            Some(&b) => Err(error(
                ErrorKind::BadBoolean,
                start,
                format!("boolean byte {b} is neither 0 nor 1"),
            )),
        }
    }

    fn recurrence(&mut self) -> Result<Option<Recurrence<'a>>, DecodeError> {
        if !self.present()? {
            return Ok(None);
        }
        Ok(Some(Recurrence {
            cron: self.opt_string()?,
            every_ms: self.opt_long()?,
            after_ms: self.opt_long()?,
            timezone: self.string()?,
            starts_at: self.opt_long()?,
            ends_at: self.opt_long()?,
            max_runs: self.opt_long()?,
            missed: self.string()?,
            overlap: self.string()?,
            catch_up_ms: self.opt_long()?,
            paused: self.boolean()?,
            occurrence_ms: self.long()?,
            runs: self.long()?,
            skipped: self.long()?,
            running_ms: self.opt_long()?,
            buffered_ms: self.opt_long()?,
        }))
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
            recurrence: None,
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
            s.producer = r.opt_string()?;
            s.recurrence = r.recurrence()?;
            Command::Schedule(s)
        }
        1 => Command::Cancel(r.string()?),
        2 => Command::Pause(r.string()?),
        3 => Command::Resume(r.string()?),
        4 => Command::Done {
            id: r.string()?,
            fire_id: r.string()?,
            finished_ms: r.long()?,
        },
        5 => Command::Backfill {
            id: r.string()?,
            from_ms: r.long()?,
            to_ms: r.long()?,
        },
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
    s.producer = r.opt_string()?;
    s.recurrence = r.recurrence()?;
    r.end()?;
    Ok((s, version))
}

/// `due_ms` of a parked state record (scheduler.model.PARKED_MS): an occurrence there means none is left.
pub const PARKED_MS: i64 = 253_402_300_799_999;

/// The step of an `every` schedule fired on time (see `step_on_time`): the next state record (None: this fire
/// is the last, the schedule ends), and the fired occurrence's nominal time, run number and skipped count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnTime {
    pub next: Option<Vec<u8>>,
    pub at_ms: i64,
    pub run: i64,
    pub skipped: i64,
}

/// The common case of scheduler.recurring.step, without building the schedule in Python: an `every` schedule
/// (not cron, not after), not paused, nothing running or buffered, overlap "allow", missed "latest", "skip" or
/// "all", whose armed occurrence is due (occurrence <= now) and the only one due (now < occurrence + every),
/// and not late (within `grace_ms`, and within the catch-up window under "all"). Then the armed occurrence
/// fires as run runs + 1, and the next state is the same record armed at occurrence + every (None when
/// max_runs is reached or the next occurrence is after ends_at). Any other case, or a record of another
/// writer schema, gives None: the Python engine decides. Arithmetic that would overflow gives None too.
pub fn step_on_time(
    value: &[u8],
    now_ms: i64,
    grace_ms: i64,
    catch_up_ms: i64,
    fp: &[u8; 8],
) -> Option<OnTime> {
    let (mut s, version) = decode_state(value, fp).ok()?;
    let r = s.recurrence.as_mut()?;
    let every = r.every_ms?;
    let occ = r.occurrence_ms;
    let plain = r.cron.is_none()
        && r.after_ms.is_none()
        && every > 0
        && !r.paused
        && r.running_ms.is_none()
        && r.buffered_ms.is_none()
        && r.overlap == "allow"
        && occ != PARKED_MS
        && r.max_runs.is_none_or(|m| r.runs < m);
    if !plain || occ > now_ms {
        return None;
    }
    let next = occ.checked_add(every)?;
    if next <= now_ms || next >= PARKED_MS || r.starts_at.is_some_and(|s| next < s) {
        return None; // more than one due, the end of the calendar, or before the start: the engine's
    }
    let late = now_ms.checked_sub(occ)?;
    let window = match r.missed {
        "latest" | "skip" => grace_ms,
        "all" => grace_ms.min(r.catch_up_ms.unwrap_or(catch_up_ms)),
        _ => return None,
    };
    if late > window {
        return None; // missed, or out of the catch-up window: the engine counts it
    }
    let run = r.runs.checked_add(1)?;
    let fired = OnTime {
        next: None,
        at_ms: occ,
        run,
        skipped: r.skipped,
    };
    if r.max_runs.is_some_and(|m| run >= m) || r.ends_at.is_some_and(|e| next > e) {
        return Some(fired);
    }
    r.occurrence_ms = next;
    r.runs = run;
    s.due_ms = next;
    Some(OnTime {
        next: Some(encode_state(&s, version, fp)),
        ..fired
    })
}

/// The same state record with a new due time and recurrence state (the rest copied); None for a record of
/// another writer schema or one that does not decode.
pub fn restate(
    value: &[u8],
    due_ms: i64,
    recurrence: Recurrence<'_>,
    fp: &[u8; 8],
) -> Option<Vec<u8>> {
    let (mut s, version) = decode_state(value, fp).ok()?;
    s.due_ms = due_ms;
    s.recurrence = Some(recurrence);
    Some(encode_state(&s, version, fp))
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
