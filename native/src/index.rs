//! The packed due index of one partition, without Python types.
//!
//! Three structures, none holding a heap object per schedule:
//! - `Arena`: the state records themselves, packed one after another in 1 MiB chunks (no 2x growth slack). An
//!   entry is `[len|flags: u32][seq: u32][record][key_len: u32, key]?` padded to 4 bytes; the id is read back from
//!   the record's own `id` field, and stored after it only when it differs. A remove or replace marks the entry
//!   dead; a sealed chunk whose dead share passes `COMPACT_DEAD` has its live entries moved to the tail and is
//!   freed.
//! - `Table`: open addressing by id with linear probing and backward-shift deletion; a slot is only the entry's
//!   4-byte location (keys are compared in the arena), at most 3/4 full.
//! - `Order`: the (due_ms, seq, location) keys, 16 bytes each, in sorted blocks of up to 512 (a two-level B+tree:
//!   one binary search over the blocks' first keys, one inside a block). Earliest first, ties in put order (seq
//!   grows with every put). Blocks that fill up hand keys to a neighbour before splitting, appends at the end
//!   start a new block, so blocks stay ~80-100% full, and "how many are due by t" is a sum over block lengths.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Label and window length (ms) of the "upcoming due" gauges.
pub const WINDOWS: [(&str, i64); 5] = [
    ("1m", 60_000),
    ("5m", 300_000),
    ("1h", 3_600_000),
    ("6h", 21_600_000),
    ("24h", 86_400_000),
];

const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10; // magic + 8-byte schema fingerprint

/// Why a state record's due time cannot be read (the messages Python's `peek_due_ms` gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    NotAvro,
    TruncatedDue,
}

impl Corrupt {
    pub fn message(self) -> &'static str {
        match self {
            Corrupt::NotAvro => "state record is not Avro single-object encoded",
            Corrupt::TruncatedDue => "state record is truncated in its due_ms field",
        }
    }
}

/// An Avro long (zigzag varint, at most 10 bytes) at `pos`, and the position after it.
fn read_long(buf: &[u8], mut pos: usize) -> Option<(i64, usize)> {
    let mut acc: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *buf.get(pos)?;
        pos += 1;
        acc |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((((acc >> 1) as i64) ^ -((acc & 1) as i64), pos));
        }
    }
    None
}

/// The due time, the state record's first field, without decoding the rest.
pub fn peek_due_ms(record: &[u8]) -> Result<i64, Corrupt> {
    if record.len() < 2 || record[..2] != MAGIC {
        return Err(Corrupt::NotAvro);
    }
    read_long(record, HEADER_LEN)
        .map(|(due, _)| due)
        .ok_or(Corrupt::TruncatedDue)
}

/// The record's `id` field (after due_ms and version), if it reads.
pub fn embedded_id(record: &[u8]) -> Option<&[u8]> {
    let (_due, pos) = read_long(record, HEADER_LEN)?;
    let (_version, pos) = read_long(record, pos)?;
    let (len, pos) = read_long(record, pos)?;
    let len = usize::try_from(len).ok()?;
    record.get(pos..pos.checked_add(len)?)
}

/// Is this the state record of a recurring schedule? Only the current state schema has a recurrence (a record
/// of an older writer, or one that does not decode, is not one).
/// Only the fields before the recurrence are walked (no copy, no text check: a put must stay cheap); a record
/// that does not decode as a whole is caught where it is read.
pub fn is_recurring(record: &[u8]) -> bool {
    if record.len() < HEADER_LEN || record[2..HEADER_LEN] != crate::codec::STATE_FINGERPRINT {
        return false;
    }
    recurrence_branch(record).is_some_and(|branch| branch == 1)
}

/// The union branch of the state record's `recurrence` field (0: null, 1: a Recurrence), walking the fields
/// before it: due_ms, version, id, target_topic, target_key, target_partition, payload, headers, created_ms,
/// producer.
fn recurrence_branch(record: &[u8]) -> Option<i64> {
    let skip_bytes = |pos: usize| -> Option<usize> {
        let (len, pos) = read_long(record, pos)?;
        let end = pos.checked_add(usize::try_from(len).ok()?)?;
        (end <= record.len()).then_some(end)
    };
    let opt = |pos: usize, then: &dyn Fn(usize) -> Option<usize>| -> Option<usize> {
        match read_long(record, pos)? {
            (0, pos) => Some(pos),
            (1, pos) => then(pos),
            _ => None,
        }
    };
    let long = |pos: usize| read_long(record, pos).map(|(_, pos)| pos);
    let mut pos = long(long(HEADER_LEN)?)?; // due_ms, version
    pos = skip_bytes(skip_bytes(pos)?)?; // id, target_topic
    pos = opt(pos, &skip_bytes)?; // target_key
    pos = opt(pos, &long)?; // target_partition (an int: the same varint)
    pos = opt(pos, &skip_bytes)?; // payload
    loop {
        let (count, next) = read_long(record, pos)?;
        pos = next;
        if count == 0 {
            break;
        }
        if count < 0 {
            pos = long(pos)?; // the block's size in bytes
        }
        for _ in 0..count.unsigned_abs() {
            pos = opt(skip_bytes(pos)?, &skip_bytes)?; // name, value
        }
    }
    pos = long(pos)?; // created_ms
    pos = opt(pos, &skip_bytes)?; // producer
    read_long(record, pos).map(|(branch, _)| branch)
}

/// The index cannot take a record: the partition's arena is at its addressable size, or the record is too big.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

// ---------------------------------------------------------------------------------------------------- arena

const CHUNK: usize = 1 << 20;
const OFFSET_BITS: u32 = 18; // offsets in 4-byte units: 2^18 * 4 = 1 MiB
const MAX_CHUNKS: usize = (1 << (32 - OFFSET_BITS)) - 1; // the last chunk number is never used: EMPTY lives there
const EMPTY: u32 = u32::MAX;
const DEAD: u32 = 1 << 31;
const EXPLICIT_KEY: u32 = 1 << 30;
const UNORDERED: u32 = 1 << 29; // its due does not read: held for get/remove, never due
const RECURRING: u32 = 1 << 28; // a recurring schedule's record (counted for the recurring gauge)
const LEN_MASK: u32 = RECURRING - 1;
/// A sealed chunk is compacted once this share of its bytes is dead (each freed byte moves at most 2 live ones).
const COMPACT_DEAD: (usize, usize) = (1, 3);

fn loc_of(chunk: usize, offset: usize) -> u32 {
    ((chunk as u32) << OFFSET_BITS) | (offset / 4) as u32
}

fn split_loc(loc: u32) -> (usize, usize) {
    (
        (loc >> OFFSET_BITS) as usize,
        ((loc & ((1 << OFFSET_BITS) - 1)) as usize) * 4,
    )
}

fn entry_size(record_len: usize, key_len: Option<usize>) -> usize {
    (8 + record_len + key_len.map_or(0, |k| 4 + k) + 3) & !3
}

#[derive(Default)]
struct Chunk {
    buf: Vec<u8>,
    dead: usize,
}

/// One entry read back from the arena.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    flags: u32,
    seq: u32,
    pub record: &'a [u8],
    pub key: &'a [u8],
}

impl Entry<'_> {
    fn size(&self) -> usize {
        let explicit = self.flags & EXPLICIT_KEY != 0;
        entry_size(self.record.len(), explicit.then_some(self.key.len()))
    }
}

fn parse_entry(buf: &[u8], offset: usize) -> Entry<'_> {
    let word = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().unwrap());
    let flags = word(offset);
    let len = (flags & LEN_MASK) as usize;
    let record = &buf[offset + 8..offset + 8 + len];
    let key = if flags & EXPLICIT_KEY != 0 {
        let at = offset + 8 + len;
        let klen = word(at) as usize;
        &buf[at + 4..at + 4 + klen]
    } else {
        embedded_id(record).unwrap_or(&[])
    };
    Entry {
        flags,
        seq: word(offset + 4),
        record,
        key,
    }
}

#[derive(Default)]
struct Arena {
    chunks: Vec<Chunk>,
    free: Vec<usize>, // chunk numbers to reuse
    tail: Option<usize>,
}

impl Arena {
    fn entry(&self, loc: u32) -> Entry<'_> {
        let (chunk, offset) = split_loc(loc);
        parse_entry(&self.chunks[chunk].buf, offset)
    }

    fn new_chunk(&mut self, capacity: usize) -> Result<usize, Full> {
        let chunk = Chunk {
            buf: Vec::with_capacity(capacity),
            dead: 0,
        };
        if let Some(n) = self.free.pop() {
            self.chunks[n] = chunk;
            return Ok(n);
        }
        if self.chunks.len() >= MAX_CHUNKS {
            return Err(Full);
        }
        self.chunks.push(chunk);
        Ok(self.chunks.len() - 1)
    }

    /// Appends an entry and returns its location, and the chunk sealed to make room (if one was).
    fn append(
        &mut self,
        flags: u32,
        seq: u32,
        record: &[u8],
        key: Option<&[u8]>,
    ) -> Result<(u32, Option<usize>), Full> {
        let size = entry_size(record.len(), key.map(<[u8]>::len));
        let mut sealed = None;
        let chunk = if size > CHUNK {
            self.new_chunk(size)? // an oversized record gets a chunk of its own; the tail stays
        } else {
            match self.tail {
                Some(t) if self.chunks[t].buf.len() + size <= CHUNK => t,
                old => {
                    let t = self.new_chunk(CHUNK)?;
                    self.tail = Some(t);
                    sealed = old;
                    t
                }
            }
        };
        let buf = &mut self.chunks[chunk].buf;
        let offset = buf.len();
        buf.extend_from_slice(&(flags | record.len() as u32).to_le_bytes());
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.extend_from_slice(record);
        if let Some(key) = key {
            buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
            buf.extend_from_slice(key);
        }
        buf.resize(offset + size, 0);
        Ok((loc_of(chunk, offset), sealed))
    }

    /// Marks the entry dead; returns its chunk.
    fn kill(&mut self, loc: u32) -> usize {
        let (chunk, offset) = split_loc(loc);
        let size = parse_entry(&self.chunks[chunk].buf, offset).size();
        let c = &mut self.chunks[chunk];
        let word = u32::from_le_bytes(c.buf[offset..offset + 4].try_into().unwrap()) | DEAD;
        c.buf[offset..offset + 4].copy_from_slice(&word.to_le_bytes());
        c.dead += size;
        chunk
    }

    /// Every live entry with its location, in arena order.
    fn live(&self) -> impl Iterator<Item = (u32, Entry<'_>)> + '_ {
        self.chunks.iter().enumerate().flat_map(|(n, c)| {
            let mut offset = 0;
            std::iter::from_fn(move || {
                while offset < c.buf.len() {
                    let entry = parse_entry(&c.buf, offset);
                    let at = offset;
                    offset += entry.size();
                    if entry.flags & DEAD == 0 {
                        return Some((loc_of(n, at), entry));
                    }
                }
                None
            })
        })
    }

    fn set_seq(&mut self, loc: u32, seq: u32) {
        let (chunk, offset) = split_loc(loc);
        self.chunks[chunk].buf[offset + 4..offset + 8].copy_from_slice(&seq.to_le_bytes());
    }

    fn release(&mut self, chunk: usize) {
        self.chunks[chunk] = Chunk::default();
        self.free.push(chunk);
        if self.tail == Some(chunk) {
            self.tail = None;
        }
    }

    fn should_compact(&self, chunk: usize) -> bool {
        let c = &self.chunks[chunk];
        let sealed = self.tail != Some(chunk);
        !c.buf.is_empty() && c.dead == c.buf.len()
            || (sealed && c.dead * COMPACT_DEAD.1 >= c.buf.len() * COMPACT_DEAD.0)
    }
}

// ---------------------------------------------------------------------------------------------------- table

struct Table {
    slots: Vec<u32>,
    /// Per slot, 0 when empty, else 0x80 | 7 bits of the key's hash: a probe reads the arena only on a match.
    tags: Vec<u8>,
    len: usize,
    hasher: RandomState, // keyed SipHash: ids are user input, so a fixed hash could be made to collide
}

enum Probe {
    Found(usize, u32),
    Vacant(usize, u8), // the empty slot, and the tag the key would have there
}

fn tag_of(hash: u64) -> u8 {
    0x80 | (hash >> 57) as u8
}

impl Table {
    fn new() -> Self {
        Table {
            slots: vec![EMPTY; 8],
            tags: vec![0; 8],
            len: 0,
            hasher: RandomState::new(),
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn probe(&self, key: &[u8], arena: &Arena) -> Probe {
        let hash = self.hash(key);
        let (tag, mut i) = (tag_of(hash), hash as usize & self.mask());
        loop {
            match self.tags[i] {
                0 => return Probe::Vacant(i, tag),
                t if t == tag && arena.entry(self.slots[i]).key == key => {
                    return Probe::Found(i, self.slots[i])
                }
                _ => i = (i + 1) & self.mask(),
            }
        }
    }

    /// The slot holding `loc`, whose key is `key`.
    fn slot_of(&self, key: &[u8], loc: u32) -> usize {
        let mut i = self.hash(key) as usize & self.mask();
        while self.slots[i] != loc {
            debug_assert!(self.tags[i] != 0, "a live entry is missing from the table");
            i = (i + 1) & self.mask();
        }
        i
    }

    /// Doubles the table before it is 3/4 full, reading the keys in arena order (sequential, not one cache miss
    /// per entry); every live arena entry is in the table.
    fn grow_for_one_more(&mut self, arena: &Arena) {
        if (self.len + 1) * 4 <= self.slots.len() * 3 {
            return;
        }
        let size = self.slots.len() * 2;
        self.slots = vec![EMPTY; size];
        self.tags = vec![0; size];
        for (loc, entry) in arena.live() {
            let hash = self.hash(entry.key);
            let mut i = hash as usize & self.mask();
            while self.tags[i] != 0 {
                i = (i + 1) & self.mask();
            }
            self.slots[i] = loc;
            self.tags[i] = tag_of(hash);
        }
    }

    /// Empties slot `i` and shifts the rest of its probe run back, so no lookup needs a tombstone.
    fn delete(&mut self, mut i: usize, arena: &Arena) {
        let mask = self.mask();
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if self.tags[j] == 0 {
                break;
            }
            let home = self.hash(arena.entry(self.slots[j]).key) as usize & mask;
            // the entry at j may move into the hole at i if i lies on its probe path (home .. j, cyclically)
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(i) & mask) {
                self.slots[i] = self.slots[j];
                self.tags[i] = self.tags[j];
                i = j;
            }
        }
        self.slots[i] = EMPTY;
        self.tags[i] = 0;
        self.len -= 1;
    }
}

// ---------------------------------------------------------------------------------------------------- order

const BLOCK: usize = 512;

fn order_key(due_ms: i64, seq: u32, loc: u32) -> u128 {
    (u128::from((due_ms as u64) ^ (1 << 63)) << 64) | (u128::from(seq) << 32) | u128::from(loc)
}

fn key_due(key: u128) -> i64 {
    (((key >> 64) as u64) ^ (1 << 63)) as i64
}

fn key_loc(key: u128) -> u32 {
    key as u32
}

/// Sorted keys in blocks of at most BLOCK; no block is empty; `firsts[i]` is `blocks[i][0]`.
#[derive(Default)]
struct Order {
    blocks: Vec<Vec<u128>>,
    firsts: Vec<u128>,
    len: usize,
}

impl Order {
    fn block_for(&self, key: u128) -> usize {
        self.firsts.partition_point(|&f| f <= key).saturating_sub(1)
    }

    fn insert(&mut self, key: u128) {
        self.len += 1;
        if self.blocks.is_empty() {
            self.push_block(self.blocks.len(), vec![key]);
            return;
        }
        let mut i = self.block_for(key);
        if self.blocks[i].len() == BLOCK {
            let last = i + 1 == self.blocks.len();
            if last && key > self.blocks[i][BLOCK - 1] {
                self.push_block(i + 1, vec![key]); // appending in order: leave the full block full
                return;
            }
            self.make_room(i);
            i = self.block_for(key);
        }
        let block = &mut self.blocks[i];
        let pos = block.partition_point(|&k| k < key);
        block.insert(pos, key);
        self.firsts[i] = block[0];
    }

    fn push_block(&mut self, at: usize, keys: Vec<u128>) {
        let mut block = Vec::with_capacity(BLOCK);
        block.extend_from_slice(&keys);
        self.firsts.insert(at, block[0]);
        self.blocks.insert(at, block);
    }

    /// Block i is full: move keys to a neighbour with room, or split it.
    fn make_room(&mut self, i: usize) {
        let room = |j: usize| BLOCK - self.blocks[j].len();
        if i + 1 < self.blocks.len() && room(i + 1) >= BLOCK / 8 {
            let n = room(i + 1) / 2;
            let moved: Vec<u128> = self.blocks[i].drain(BLOCK - n..).collect();
            self.blocks[i + 1].splice(0..0, moved);
            self.firsts[i + 1] = self.blocks[i + 1][0];
        } else if i > 0 && room(i - 1) >= BLOCK / 8 {
            let n = room(i - 1) / 2;
            let moved: Vec<u128> = self.blocks[i].drain(..n).collect();
            self.blocks[i - 1].extend_from_slice(&moved);
            self.firsts[i] = self.blocks[i][0];
        } else {
            let upper: Vec<u128> = self.blocks[i].drain(BLOCK / 2..).collect();
            self.push_block(i + 1, upper);
        }
    }

    fn remove(&mut self, key: u128) {
        let i = self.block_for(key);
        let block = &mut self.blocks[i];
        let pos = block
            .binary_search(&key)
            .expect("a live entry is missing from the due order");
        block.remove(pos);
        self.len -= 1;
        if block.is_empty() {
            self.blocks.remove(i);
            self.firsts.remove(i);
            return;
        }
        self.firsts[i] = block[0];
        if block.len() < BLOCK / 4 {
            let merge_with = if i + 1 < self.blocks.len() {
                Some(i + 1)
            } else {
                i.checked_sub(1)
            };
            if let Some(j) = merge_with {
                let (left, right) = (i.min(j), i.max(j));
                if self.blocks[left].len() + self.blocks[right].len() <= BLOCK * 3 / 4 {
                    let moved = self.blocks.remove(right);
                    self.firsts.remove(right);
                    self.blocks[left].extend_from_slice(&moved);
                }
            }
        }
    }

    fn first(&self) -> Option<u128> {
        self.firsts.first().copied()
    }

    fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        self.blocks.iter().flat_map(|b| b.iter().copied())
    }

    /// The keys from the first one >= `key` on, in order (one binary search to the start, not a scan).
    fn iter_from(&self, key: u128) -> impl Iterator<Item = u128> + '_ {
        let i = self.firsts.partition_point(|&f| f < key).saturating_sub(1);
        let start = self
            .blocks
            .get(i)
            .map_or(0, |b| b.partition_point(|&k| k < key));
        self.blocks
            .get(i..)
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .flat_map(move |(n, b)| b[if n == 0 { start } else { 0 }..].iter().copied())
    }

    /// How many keys are below `key`.
    fn rank(&self, key: u128) -> usize {
        let i = self.firsts.partition_point(|&f| f < key);
        if i == 0 {
            return 0;
        }
        let whole: usize = self.blocks[..i - 1].iter().map(Vec::len).sum();
        whole + self.blocks[i - 1].partition_point(|&k| k < key)
    }

    fn bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.capacity() * 16 + 24)
            .sum::<usize>()
            + self.firsts.capacity() * 16
    }
}

// ---------------------------------------------------------------------------------------------------- index

/// Memory held by an index, by part (bytes).
#[derive(Debug, Default, Clone, Copy)]
pub struct Memory {
    pub record_bytes: usize,
    pub arena_used: usize,
    pub arena_dead: usize,
    pub arena_chunks: usize,
    pub table: usize,
    pub order: usize,
}

/// Pending schedules of one partition: id -> state record, found by due time.
pub struct DueIndex {
    arena: Arena,
    table: Table,
    order: Order,
    next_seq: u32,
    seq_limit: u32,
    record_bytes: usize,
    recurring: usize,
}

impl Default for DueIndex {
    fn default() -> Self {
        DueIndex {
            arena: Arena::default(),
            table: Table::new(),
            order: Order::default(),
            next_seq: 0,
            seq_limit: u32::MAX,
            record_bytes: 0,
            recurring: 0,
        }
    }
}

impl DueIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.table.len
    }

    pub fn is_empty(&self) -> bool {
        self.table.len == 0
    }

    /// How many of the pending schedules are recurring.
    pub fn recurring(&self) -> usize {
        self.recurring
    }

    pub fn get(&self, id: &[u8]) -> Option<&[u8]> {
        match self.table.probe(id, &self.arena) {
            Probe::Found(_, loc) => Some(self.arena.entry(loc).record),
            Probe::Vacant(..) => None,
        }
    }

    pub fn contains(&self, id: &[u8]) -> bool {
        self.get(id).is_some()
    }

    /// Inserts or replaces. A record whose due does not read replaces the id's previous version too (it is what
    /// the state topic now holds), is kept for `get`/`remove` and never comes due; the error says why.
    pub fn put(&mut self, id: &[u8], record: &[u8]) -> Result<Result<(), Corrupt>, Full> {
        if record.len() > LEN_MASK as usize || id.len() > u32::MAX as usize {
            return Err(Full);
        }
        let due = peek_due_ms(record);
        if self.next_seq >= self.seq_limit {
            self.renumber();
        }
        self.table.grow_for_one_more(&self.arena);
        let seq = self.next_seq;
        let key = (embedded_id(record) != Some(id)).then_some(id);
        let recurring = due.is_ok() && is_recurring(record);
        let flags = if key.is_some() { EXPLICIT_KEY } else { 0 }
            | if due.is_err() { UNORDERED } else { 0 }
            | if recurring { RECURRING } else { 0 };
        let (loc, sealed) = self.arena.append(flags, seq, record, key)?;
        self.next_seq += 1;
        self.record_bytes += record.len();
        self.recurring += usize::from(recurring);
        if let Ok(due) = due {
            self.order.insert(order_key(due, seq, loc));
        }
        let old = match self.table.probe(id, &self.arena) {
            Probe::Found(slot, old) => {
                self.table.slots[slot] = loc;
                Some(old)
            }
            Probe::Vacant(slot, tag) => {
                self.table.slots[slot] = loc;
                self.table.tags[slot] = tag;
                self.table.len += 1;
                None
            }
        };
        if let Some(old) = old {
            self.unlink(old);
        }
        if let Some(chunk) = sealed.filter(|&c| self.arena.should_compact(c)) {
            self.compact(chunk); // sealed just now with dead entries in it (an old version unlinked above, say)
        }
        Ok(due.map(|_| ()))
    }

    /// Removes the id; returns its record.
    pub fn remove(&mut self, id: &[u8]) -> Option<Vec<u8>> {
        let Probe::Found(slot, loc) = self.table.probe(id, &self.arena) else {
            return None;
        };
        let record = self.arena.entry(loc).record.to_vec();
        self.table.delete(slot, &self.arena);
        self.unlink(loc);
        Some(record)
    }

    /// An entry left the table: take it out of the order, mark it dead, compact its chunk if due.
    fn unlink(&mut self, loc: u32) {
        let entry = self.arena.entry(loc);
        self.record_bytes -= entry.record.len();
        self.recurring -= usize::from(entry.flags & RECURRING != 0);
        if entry.flags & UNORDERED == 0 {
            let due = peek_due_ms(entry.record).expect("an ordered entry's due reads");
            self.order.remove(order_key(due, entry.seq, loc));
        }
        let chunk = self.arena.kill(loc);
        if self.arena.should_compact(chunk) {
            self.compact(chunk);
        }
    }

    /// Moves the live entries of `chunk` to the tail and frees it.
    fn compact(&mut self, chunk: usize) {
        let buf = std::mem::take(&mut self.arena.chunks[chunk].buf);
        self.arena.release(chunk);
        let mut offset = 0;
        while offset < buf.len() {
            let entry = parse_entry(&buf, offset);
            let size = entry.size();
            if entry.flags & DEAD == 0 {
                let old = loc_of(chunk, offset);
                let explicit = (entry.flags & EXPLICIT_KEY != 0).then_some(entry.key);
                let flags = entry.flags & (EXPLICIT_KEY | UNORDERED | RECURRING);
                // cannot fail: the freed chunk number is the first one reused
                let (loc, _) = self
                    .arena
                    .append(flags, entry.seq, entry.record, explicit)
                    .expect("room to compact");
                let slot = self.table.slot_of(entry.key, old);
                self.table.slots[slot] = loc;
                if flags & UNORDERED == 0 {
                    let due = peek_due_ms(entry.record).expect("an ordered entry's due reads");
                    self.order.remove(order_key(due, entry.seq, old));
                    self.order.insert(order_key(due, entry.seq, loc));
                }
            }
            offset += size;
        }
    }

    /// Gives every entry a new sequence number in order, so put order survives the counter's wrap.
    fn renumber(&mut self) {
        let mut seq = 0u32;
        for block in &mut self.order.blocks {
            for key in block.iter_mut() {
                let loc = key_loc(*key);
                self.arena.set_seq(loc, seq);
                *key = order_key(key_due(*key), seq, loc);
                seq += 1;
            }
        }
        self.order.firsts = self.order.blocks.iter().map(|b| b[0]).collect();
        for loc in self.table.slots.iter().copied().filter(|&l| l != EMPTY) {
            if self.arena.entry(loc).flags & UNORDERED != 0 {
                self.arena.set_seq(loc, seq); // unordered entries keep no order; any number will do
            }
        }
        self.next_seq = seq;
    }

    pub fn next_due_ms(&self) -> Option<i64> {
        self.order.first().map(key_due)
    }

    /// Up to `max` (id, record) with due <= now, earliest first, ties in put order; nothing is removed.
    pub fn due(&self, now_ms: i64, max: usize) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.order
            .iter()
            .take_while(move |&k| key_due(k) <= now_ms)
            .take(max)
            .map(|k| self.arena.entry(key_loc(k)))
            .map(|e| (e.key, e.record))
    }

    /// Up to `max` (id, record) with `after_ms` < due <= `until_ms` (no lower bound when `after_ms` is None),
    /// earliest first, ties in put order; nothing is removed. The fire path reads what became due since a given
    /// instant without walking the backlog before it.
    pub fn due_between(
        &self,
        after_ms: Option<i64>,
        until_ms: i64,
        max: usize,
    ) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let start = match after_ms {
            None => Some(0),
            Some(after) => after.checked_add(1).map(|from| order_key(from, 0, 0)),
        };
        let keys: Box<dyn Iterator<Item = u128> + '_> = match start {
            Some(key) => Box::new(self.order.iter_from(key)),
            None => Box::new(std::iter::empty()), // after i64::MAX: nothing can be due later
        };
        keys.take_while(move |&k| key_due(k) <= until_ms)
            .take(max)
            .map(|k| self.arena.entry(key_loc(k)))
            .map(|e| (e.key, e.record))
    }

    /// How many are due at or before `at_ms`.
    pub fn count_due(&self, at_ms: i64) -> usize {
        match at_ms.checked_add(1) {
            Some(after) => self.order.rank(order_key(after, 0, 0)),
            None => self.order.len,
        }
    }

    /// Every (id, record), in arena order (put order until a compaction moves some).
    pub fn items(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.arena.live().map(|(_, e)| (e.key, e.record))
    }

    pub fn memory(&self) -> Memory {
        let chunks = self.arena.chunks.iter().filter(|c| c.buf.capacity() > 0);
        Memory {
            record_bytes: self.record_bytes,
            arena_used: self.arena.chunks.iter().map(|c| c.buf.len()).sum(),
            arena_dead: self.arena.chunks.iter().map(|c| c.dead).sum(),
            arena_chunks: chunks.count(),
            table: self.table.slots.capacity() * 5,
            order: self.order.bytes(),
        }
    }

    #[cfg(test)]
    fn check(&self) {
        // every table entry is live, reachable from its home, and in the order iff ordered; the arena's live
        // entries are exactly the table's
        assert_eq!(self.arena.live().count(), self.table.len);
        assert!(self
            .table
            .slots
            .iter()
            .zip(&self.table.tags)
            .all(|(&l, &t)| (l == EMPTY) == (t == 0)));
        let mut ordered = 0;
        for (slot, &loc) in self
            .table
            .slots
            .iter()
            .enumerate()
            .filter(|(_, &l)| l != EMPTY)
        {
            let e = self.arena.entry(loc);
            assert_eq!(e.flags & DEAD, 0);
            assert_eq!(self.table.slot_of(e.key, loc), slot);
            assert!(
                matches!(self.table.probe(e.key, &self.arena), Probe::Found(s, _) if s == slot)
            );
            if e.flags & UNORDERED == 0 {
                ordered += 1;
                let key = order_key(peek_due_ms(e.record).unwrap(), e.seq, loc);
                let b = &self.order.blocks[self.order.block_for(key)];
                assert!(b.binary_search(&key).is_ok());
            }
        }
        assert_eq!(ordered, self.order.len);
        let recurring = self
            .arena
            .live()
            .filter(|(_, e)| e.flags & RECURRING != 0)
            .count();
        assert_eq!(recurring, self.recurring);
        assert_eq!(self.order.iter().count(), self.order.len);
        let keys: Vec<u128> = self.order.iter().collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for (b, f) in self.order.blocks.iter().zip(&self.order.firsts) {
            assert!(!b.is_empty() && b.len() <= BLOCK && b[0] == *f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn zigzag(v: i64, out: &mut Vec<u8>) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    fn record(id: &[u8], due: i64, version: i64) -> Vec<u8> {
        let mut out = vec![0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8];
        zigzag(due, &mut out);
        zigzag(version, &mut out);
        zigzag(id.len() as i64, &mut out);
        out.extend_from_slice(id);
        out.extend_from_slice(&[2, b't', 0, 0, 2, 100, b'x', 0, 0, 0]);
        out
    }

    fn ids(index: &DueIndex, now: i64) -> Vec<Vec<u8>> {
        index
            .due(now, usize::MAX)
            .map(|(id, _)| id.to_vec())
            .collect()
    }

    #[test]
    fn peeks_due_and_id() {
        let r = record(b"abc", -5, 7);
        assert_eq!(peek_due_ms(&r), Ok(-5));
        assert_eq!(embedded_id(&r), Some(&b"abc"[..]));
        assert_eq!(peek_due_ms(b"\xC3"), Err(Corrupt::NotAvro));
        assert_eq!(peek_due_ms(b"xx12345678\x02"), Err(Corrupt::NotAvro));
        assert_eq!(peek_due_ms(b"\xC3\x0112345678"), Err(Corrupt::TruncatedDue));
        assert_eq!(
            peek_due_ms(b"\xC3\x0112345678\xff"),
            Err(Corrupt::TruncatedDue)
        );
        assert_eq!(
            peek_due_ms(&[&b"\xC3\x0112345678"[..], &[0xff; 11]].concat()),
            Err(Corrupt::TruncatedDue)
        );
        let max = record(b"", i64::MAX, 0);
        assert_eq!(peek_due_ms(&max), Ok(i64::MAX));
        assert_eq!(peek_due_ms(&record(b"", i64::MIN, 0)), Ok(i64::MIN));
        assert_eq!(embedded_id(&r[..r.len() - 12]), None);
    }

    #[test]
    fn earliest_first_ties_in_put_order() {
        let mut ix = DueIndex::new();
        for (id, due) in [
            (&b"c"[..], 5),
            (b"a", 5),
            (b"b", 1),
            (b"d", i64::MIN),
            (b"e", i64::MAX),
        ] {
            ix.put(id, &record(id, due, 0)).unwrap().unwrap();
        }
        assert_eq!(ids(&ix, 5), [&b"d"[..], b"b", b"c", b"a"]);
        ix.put(b"c", &record(b"c", 5, 1)).unwrap().unwrap(); // a replace is a new put: after a
        assert_eq!(ids(&ix, i64::MAX), [&b"d"[..], b"b", b"a", b"c", b"e"]);
        assert_eq!(ix.next_due_ms(), Some(i64::MIN));
        assert_eq!(ix.count_due(4), 2);
        assert_eq!(ix.count_due(5), 4);
        assert_eq!(ix.count_due(i64::MAX), 5);
        ix.check();
    }

    #[test]
    fn due_between_reads_a_range_of_the_order() {
        let mut ix = DueIndex::new();
        for (id, due) in [
            (&b"a"[..], 5),
            (b"b", 1),
            (b"c", 5),
            (b"d", i64::MIN),
            (b"e", i64::MAX),
            (b"f", 7),
        ] {
            ix.put(id, &record(id, due, 0)).unwrap().unwrap();
        }
        let range = |after: Option<i64>, until: i64, max: usize| -> Vec<Vec<u8>> {
            ix.due_between(after, until, max)
                .map(|(id, _)| id.to_vec())
                .collect()
        };
        assert_eq!(range(Some(1), 7, 10), [&b"a"[..], b"c", b"f"]);
        assert_eq!(range(Some(1), 6, 10), [&b"a"[..], b"c"]);
        assert_eq!(range(Some(1), 7, 1), [&b"a"[..]]);
        assert_eq!(range(Some(0), 1, 10), [&b"b"[..]]);
        assert_eq!(range(Some(5), 5, 10), Vec::<Vec<u8>>::new());
        assert_eq!(range(None, 1, 10), [&b"d"[..], b"b"]);
        assert_eq!(range(Some(i64::MIN), 1, 10), [&b"b"[..]]);
        assert_eq!(range(Some(7), i64::MAX, 10), [&b"e"[..]]);
        assert_eq!(range(Some(i64::MAX), i64::MAX, 10), Vec::<Vec<u8>>::new());
        assert_eq!(range(None, i64::MAX, 0), Vec::<Vec<u8>>::new());
        assert_eq!(range(Some(7), 1, 10), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn due_between_matches_a_model_across_many_blocks() {
        let mut ix = DueIndex::new();
        let n = 5_000i64;
        let mut model: Vec<(i64, i64)> = Vec::new(); // (due, put number)
        for i in 0..n {
            let due = (i * 7919) % 1000;
            let id = format!("{i}");
            ix.put(id.as_bytes(), &record(id.as_bytes(), due, 0))
                .unwrap()
                .unwrap();
            model.push((due, i));
        }
        model.sort();
        for (after, until, max) in [
            (None, 999, 100_000),
            (Some(0), 10, 7),
            (Some(499), 600, 3000),
        ] {
            let got: Vec<Vec<u8>> = ix
                .due_between(after, until, max)
                .map(|(id, _)| id.to_vec())
                .collect();
            let want: Vec<Vec<u8>> = model
                .iter()
                .filter(|(d, _)| after.is_none_or(|a| *d > a) && *d <= until)
                .take(max)
                .map(|(_, i)| format!("{i}").into_bytes())
                .collect();
            assert_eq!(got, want, "{after:?}..={until} max {max}");
        }
    }

    #[test]
    fn a_key_other_than_the_embedded_id_is_kept() {
        let mut ix = DueIndex::new();
        ix.put(b"key", &record(b"other", 1, 0)).unwrap().unwrap();
        ix.put(b"other", &record(b"other", 2, 0)).unwrap().unwrap();
        assert_eq!(ids(&ix, 10), [&b"key"[..], b"other"]);
        assert_eq!(ix.get(b"key"), Some(&record(b"other", 1, 0)[..]));
        assert_eq!(ix.remove(b"key"), Some(record(b"other", 1, 0)));
        assert_eq!(ix.len(), 1);
        ix.check();
    }

    #[test]
    fn a_corrupt_record_replaces_but_never_comes_due() {
        let mut ix = DueIndex::new();
        ix.put(b"a", &record(b"a", 1, 0)).unwrap().unwrap();
        assert_eq!(ix.put(b"a", b"garbage"), Ok(Err(Corrupt::NotAvro)));
        assert_eq!(ix.get(b"a"), Some(&b"garbage"[..]));
        assert_eq!(
            (ix.len(), ix.next_due_ms(), ix.count_due(i64::MAX)),
            (1, None, 0)
        );
        ix.check();
        assert_eq!(ix.remove(b"a"), Some(b"garbage".to_vec()));
        assert!(ix.is_empty());
    }

    #[test]
    fn table_grows_and_deletes_with_backward_shift() {
        let mut ix = DueIndex::new();
        let n = 20_000;
        for i in 0..n {
            let id = format!("id{i}");
            ix.put(id.as_bytes(), &record(id.as_bytes(), i64::from(i % 97), 0))
                .unwrap()
                .unwrap();
        }
        assert_eq!(ix.len(), n as usize);
        assert!(ix.table.slots.len() >= n as usize * 4 / 3);
        for i in (0..n).step_by(3) {
            assert!(ix.remove(format!("id{i}").as_bytes()).is_some());
        }
        ix.check();
        for i in 0..n {
            assert_eq!(
                ix.contains(format!("id{i}").as_bytes()),
                i % 3 != 0,
                "id{i}"
            );
        }
        assert!(ix.remove(b"id0").is_none());
    }

    #[test]
    fn compaction_frees_chunks_and_keeps_everything() {
        let mut ix = DueIndex::new();
        let big = vec![b'p'; 1000];
        let rec = |id: &[u8], due: i64| {
            let mut r = record(id, due, 0);
            r.extend_from_slice(&big);
            r
        };
        let n = 10_000; // ~10 MB: ten chunks
        for i in 0..n {
            let id = format!("{i}");
            ix.put(id.as_bytes(), &rec(id.as_bytes(), n - i))
                .unwrap()
                .unwrap();
        }
        let before = ix.memory();
        assert!(before.arena_chunks >= 10);
        for i in 0..n {
            if i % 4 != 0 {
                ix.remove(format!("{i}").as_bytes());
            }
        }
        ix.check();
        let after = ix.memory();
        assert!(after.arena_chunks <= 4, "{after:?}");
        assert!(
            after.arena_dead * 3 <= after.arena_used + CHUNK,
            "{after:?}"
        );
        let want: Vec<Vec<u8>> = (0..n)
            .rev()
            .filter(|i| i % 4 == 0)
            .map(|i| format!("{i}").into_bytes())
            .collect();
        assert_eq!(ids(&ix, n), want);
        for i in (0..n).step_by(4) {
            assert_eq!(
                ix.get(format!("{i}").as_bytes()),
                Some(&rec(format!("{i}").as_bytes(), n - i)[..])
            );
        }
        for i in (0..n).step_by(4) {
            ix.remove(format!("{i}").as_bytes());
        }
        assert!(ix.memory().arena_chunks <= 1 && ix.memory().arena_used == 0);
    }

    #[test]
    fn oversized_records_get_their_own_chunk() {
        let mut ix = DueIndex::new();
        let mut r = record(b"huge", 3, 0);
        r.extend(std::iter::repeat_n(7u8, 3 * CHUNK));
        ix.put(b"small", &record(b"small", 1, 0)).unwrap().unwrap();
        ix.put(b"huge", &r).unwrap().unwrap();
        ix.put(b"small2", &record(b"small2", 2, 0))
            .unwrap()
            .unwrap();
        assert_eq!(ix.get(b"huge"), Some(&r[..]));
        assert_eq!(ids(&ix, 3), [&b"small"[..], b"small2", b"huge"]);
        ix.remove(b"huge");
        assert_eq!(ix.memory().arena_chunks, 1);
        ix.check();
    }

    #[test]
    fn sequence_wrap_renumbers_and_keeps_put_order() {
        let mut ix = DueIndex::new();
        ix.seq_limit = 50;
        let mut model: Vec<(i64, u64, Vec<u8>)> = Vec::new(); // (due, put number, id)
        for step in 0..500u64 {
            let id = format!("{}", step % 37).into_bytes();
            let due = (step % 5) as i64;
            model.retain(|(_, _, i)| *i != id);
            model.push((due, step, id.clone()));
            ix.put(&id, &record(&id, due, 0)).unwrap().unwrap();
        }
        model.sort();
        assert_eq!(
            ids(&ix, 10),
            model.into_iter().map(|(_, _, i)| i).collect::<Vec<_>>()
        );
        ix.check();
    }

    fn state(id: &str, due: i64, every_ms: Option<i64>) -> Vec<u8> {
        use crate::codec::{encode_state, Recurrence, Schedule, STATE_FINGERPRINT};
        let recurrence = every_ms.map(|every| Recurrence {
            cron: None,
            every_ms: Some(every),
            after_ms: None,
            timezone: "UTC",
            starts_at: None,
            ends_at: None,
            max_runs: None,
            missed: "latest",
            overlap: "allow",
            catch_up_ms: None,
            paused: false,
            occurrence_ms: due,
            runs: 0,
            skipped: 0,
            running_ms: None,
            buffered_ms: None,
        });
        let s = Schedule {
            id,
            target_topic: "t",
            due_ms: due,
            payload: Some(b"p"),
            target_key: (due % 2 == 0).then_some(b"key".as_slice()),
            headers: vec![("a", Some(b"1".as_slice())), ("b", None)],
            target_partition: (due % 3 == 0).then_some(-2),
            created_ms: 1,
            producer: (due % 5 == 0).then_some("producer-1"),
            recurrence,
        };
        encode_state(&s, 7, &STATE_FINGERPRINT)
    }

    #[test]
    fn counts_recurring_records_through_replace_remove_and_compaction() {
        let mut ix = DueIndex::new();
        for i in 0..3000 {
            let id = format!("s{i}");
            let every = (i % 3 == 0).then_some(1000);
            ix.put(id.as_bytes(), &state(&id, i, every))
                .unwrap()
                .unwrap();
        }
        assert_eq!(ix.recurring(), 1000);
        for (_, record) in ix.items() {
            let decoded =
                crate::codec::decode_state(record, &crate::codec::STATE_FINGERPRINT).unwrap();
            assert_eq!(is_recurring(record), decoded.0.recurrence.is_some());
        }
        // a recurring schedule replaced by a one-time one, and the other way round
        ix.put(b"s0", &state("s0", 5, None)).unwrap().unwrap();
        ix.put(b"s1", &state("s1", 5, Some(60_000)))
            .unwrap()
            .unwrap();
        assert_eq!(ix.recurring(), 1000);
        ix.put(b"s2", &state("s2", 5, Some(60_000)))
            .unwrap()
            .unwrap();
        assert_eq!(ix.recurring(), 1001);
        assert!(ix.remove(b"s3").is_some()); // recurring (3 % 3 == 0)
        assert!(ix.remove(b"s4").is_some()); // one-time
        assert_eq!(ix.recurring(), 1000);
        // replace every recurring record many times over: chunks are compacted, the count holds
        for round in 0..40 {
            for i in (6..3000).step_by(3) {
                let id = format!("s{i}");
                ix.put(id.as_bytes(), &state(&id, round, Some(1000)))
                    .unwrap()
                    .unwrap();
            }
        }
        ix.check();
        assert_eq!(ix.recurring(), 1000);
        // a record that is not a current-schema state record is never counted
        ix.put(b"x", &record(b"x", 3, 1)).unwrap().unwrap();
        ix.put(b"y", b"not avro").unwrap().unwrap_err();
        assert_eq!(ix.recurring(), 1000);
        ix.check();
    }

    #[test]
    fn random_operations_match_a_model() {
        let mut ix = DueIndex::new();
        let mut model: HashMap<Vec<u8>, (i64, u64, Vec<u8>)> = HashMap::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for step in 0..60_000u64 {
            let id = format!("s{}", next() % 3000).into_bytes();
            match next() % 10 {
                0..=5 => {
                    let due = (next() % 2000) as i64;
                    let mut r = record(&id, due, step as i64);
                    r.resize(r.len() + (next() % 300) as usize, b'z');
                    ix.put(&id, &r).unwrap().unwrap();
                    model.insert(id, (due, step, r));
                }
                6..=8 => assert_eq!(ix.remove(&id), model.remove(&id).map(|(_, _, r)| r)),
                _ => {
                    let now = (next() % 2000) as i64;
                    let mut want: Vec<_> = model.iter().filter(|(_, v)| v.0 <= now).collect();
                    want.sort_by_key(|(_, v)| (v.0, v.1));
                    let got: Vec<_> = ix
                        .due(now, 50)
                        .map(|(i, r)| (i.to_vec(), r.to_vec()))
                        .collect();
                    let want: Vec<_> = want
                        .into_iter()
                        .take(50)
                        .map(|(i, v)| (i.clone(), v.2.clone()))
                        .collect();
                    assert_eq!(got, want);
                    assert_eq!(
                        ix.count_due(now),
                        model.values().filter(|v| v.0 <= now).count()
                    );
                }
            }
            if step % 10_000 == 0 {
                ix.check();
            }
        }
        ix.check();
        assert_eq!(ix.len(), model.len());
        assert_eq!(ix.next_due_ms(), model.values().map(|v| v.0).min());
    }

    #[test]
    fn many_ids_in_order_with_dense_blocks() {
        let mut ix = DueIndex::new();
        let n = 200_000i64;
        for i in 0..n {
            let id = format!("{i:08}");
            ix.put(
                id.as_bytes(),
                &record(id.as_bytes(), (i * 7919) % 100_000, 0),
            )
            .unwrap()
            .unwrap();
        }
        ix.check();
        let dues: Vec<i64> = ix
            .due(i64::MAX, usize::MAX)
            .map(|(_, r)| peek_due_ms(r).unwrap())
            .collect();
        assert_eq!(dues.len(), n as usize);
        assert!(dues.windows(2).all(|w| w[0] <= w[1]));
        let fill = ix.order.len as f64 / (ix.order.blocks.len() * BLOCK) as f64;
        assert!(fill > 0.75, "blocks {fill:.2} full");
        let mut seq = DueIndex::new();
        for i in 0..n {
            let id = format!("{i}");
            seq.put(id.as_bytes(), &record(id.as_bytes(), i, 0))
                .unwrap()
                .unwrap();
        }
        assert!(seq.order.len as f64 / (seq.order.blocks.len() * BLOCK) as f64 > 0.99);
    }
}
