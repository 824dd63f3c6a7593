//! Events into envelope-v1 message bodies, each as full as the size limit
//! allows: `base64(gzip({"v":1,"id":…,"received_at":…,"events":[…]}))`.
//!
//! How much JSON fits under a limit measured after gzip and base64 is only
//! known after compressing, and recompressing until it fits doubles the
//! work. So the packer compresses each event once, into a raw deflate stream
//! with a sync flush at chosen event boundaries (checkpoints); the stream up
//! to a checkpoint is complete and byte-aligned. When a chunk overshoots the
//! budget the stream is cut back to the last checkpoint that fit and closed
//! by hand with a final stored block holding `]}` and the gzip trailer (CRC
//! and length of exactly the text kept); the events after the cut start the
//! next envelope. Chunks start small and grow from the ratio seen so far, so
//! an envelope costs a handful of flushes and the cut wastes little.

use std::ops::Range;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::{Compress, Compression, FlushCompress};
use sluice_core::wire::{self, EVENT_SEPARATOR};

/// The smallest message limit the packer works with (SQS's own minimum).
pub const MIN_MESSAGE_BYTES: usize = 1024;

/// gzip header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
/// The gzip trailer: CRC and length.
const TRAILER: usize = 8;
/// Largest stored deflate block.
const MAX_STORED: usize = 65_535;
/// The smallest chunk of events between two checkpoints, in JSON bytes.
const MIN_CHUNK: usize = 2 * 1024;

/// One message body and the events it holds.
#[derive(Debug, Clone)]
pub struct Packed {
    /// `base64(gzip(json))`, at most the limit in bytes.
    pub body: String,
    /// Indices of the events it holds, in the slice given to [`pack`].
    pub events: Range<usize>,
    /// Size of the envelope's JSON before compression.
    pub json_bytes: usize,
}

/// Why events could not be packed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// Event `index` (in the slice given) does not fit in a message alone.
    #[error("event {index} does not fit in one message")]
    TooLarge { index: usize },
    /// The compressor refused its input (only if it is misused): no
    /// message of the packing can be trusted.
    #[error("compressing an envelope failed: {0}")]
    Compress(String),
}

/// Compressed bytes allowed for a message limit: base64 makes 4 of every 3.
fn budget(max_message_bytes: usize) -> usize {
    (max_message_bytes.max(MIN_MESSAGE_BYTES) / 4) * 3
}

/// JSON events no larger than this always fit in one message alone:
/// incompressible text grows by a few bytes per 16 KiB block, plus the
/// envelope's fields and the gzip framing.
pub fn always_fits(max_message_bytes: usize) -> usize {
    let budget = budget(max_message_bytes);
    budget.saturating_sub(budget / 256 + 512)
}

/// Whether `event` fits in a message of its own.
pub fn fits_alone(event: &[u8], max_message_bytes: usize) -> bool {
    event.len() <= always_fits(max_message_bytes) || pack(&[event], max_message_bytes).is_ok()
}

/// Packs `events` (compact JSON objects) into as few bodies of at most
/// `max_message_bytes` as the checkpoints allow, in order.
pub fn pack<E: AsRef<[u8]>>(
    events: &[E],
    max_message_bytes: usize,
) -> Result<Vec<Packed>, PackError> {
    pack_keyed(events, &[], max_message_bytes)
}

/// An event's `Idempotency-Key` identity: its request's identity key and
/// its index in the request.
pub type Identity<'a> = Option<(&'a str, u64)>;

/// [`pack`], with each event's identity (`identities` is empty, or one per
/// event) written beside the events as the envelope's `idempotency` spans.
pub fn pack_keyed<E: AsRef<[u8]>>(
    events: &[E],
    identities: &[Identity<'_>],
    max_message_bytes: usize,
) -> Result<Vec<Packed>, PackError> {
    let budget = budget(max_message_bytes);
    let mut out = Vec::new();
    let mut start = 0;
    while start < events.len() {
        let first_chunk = (budget / 2).min(16 * 1024);
        let (gzip, end, json_bytes) =
            match pack_one(events, identities, start, budget, first_chunk)? {
                Some(done) => done,
                // The first chunk held several events and did not fit: one at a time.
                None => pack_one(events, identities, start, budget, 0)?
                    .ok_or(PackError::TooLarge { index: start })?,
            };
        out.push(Packed {
            body: STANDARD.encode(&gzip),
            events: start..end,
            json_bytes,
        });
        start = end;
    }
    Ok(out)
}

/// The compressed stream at an event boundary.
#[derive(Clone)]
struct Checkpoint {
    /// Events `start..end` are in.
    end: usize,
    out_len: usize,
    crc: crc32fast::Hasher,
    json_len: usize,
}

/// One envelope from `events[start..]`: the gzip bytes, the end of the events
/// it holds and its JSON size; `None` when the first chunk (of several
/// events) alone overshoots.
fn pack_one<E: AsRef<[u8]>>(
    events: &[E],
    identities: &[Identity<'_>],
    start: usize,
    budget: usize,
    first_chunk: usize,
) -> Result<Option<(Vec<u8>, usize, usize)>, PackError> {
    let mut stream = Stream::new(budget);
    stream.feed(&wire::head());
    let mut kept: Option<Checkpoint> = None;
    let mut target = first_chunk;
    let mut next = start;
    while next < events.len() {
        let chunk_start = next;
        let mut chunk = 0;
        while next < events.len() {
            let event = events[next].as_ref();
            if next > chunk_start && chunk + event.len() + 1 > target {
                break;
            }
            if next > start {
                stream.feed(&[EVENT_SEPARATOR]);
            }
            stream.feed(event);
            chunk += event.len() + 1;
            next += 1;
        }
        stream.sync();
        if let Some(e) = stream.failed.take() {
            return Err(PackError::Compress(e.to_string()));
        }
        let tail = closing(identities, start..next);
        if stream.out.len() + tail_bytes(&tail) > budget {
            return match kept {
                Some(cp) => {
                    let tail = closing(identities, start..cp.end);
                    Ok(Some(stream.close(cp, &tail)))
                }
                None if next - chunk_start > 1 => Ok(None),
                None => Err(PackError::TooLarge { index: start }),
            };
        }
        kept = Some(stream.checkpoint(next));
        // Aim the next chunk at most of the room left, at the ratio seen so far.
        let room = budget - tail_bytes(&tail) - stream.out.len();
        let ratio = (stream.out.len() - GZIP_HEADER.len()) as f64 / stream.json_len.max(1) as f64;
        target = MIN_CHUNK.max((room as f64 * 0.8 / ratio.max(0.001)) as usize);
    }
    match kept {
        Some(cp) => {
            let tail = closing(identities, start..cp.end);
            Ok(Some(stream.close(cp, &tail)))
        }
        None => Err(PackError::TooLarge { index: start }),
    }
}

/// The JSON that closes an envelope of events `range`, with the
/// `idempotency` spans of the keyed ones.
fn closing(identities: &[Identity<'_>], range: Range<usize>) -> Vec<u8> {
    if identities.is_empty() {
        return wire::closing(&[]);
    }
    let spans = wire::key_spans_of(range.map(|i| identities.get(i).copied().flatten()));
    wire::closing(&spans)
}

/// What closing with `tail` adds after the last checkpoint: stored blocks
/// (5 bytes of header each) and the gzip trailer.
fn tail_bytes(tail: &[u8]) -> usize {
    tail.len() + 5 * tail.len().div_ceil(MAX_STORED) + TRAILER
}

/// A raw deflate stream behind a gzip header, with the CRC of its input.
struct Stream {
    deflate: Compress,
    out: Vec<u8>,
    crc: crc32fast::Hasher,
    json_len: usize,
    /// The compressor's first error: the stream is unusable from there on.
    failed: Option<flate2::CompressError>,
}

impl Stream {
    fn new(budget: usize) -> Self {
        let mut out = Vec::with_capacity(budget + 16 * 1024);
        out.extend_from_slice(&GZIP_HEADER);
        Self {
            deflate: Compress::new(Compression::fast(), false),
            out,
            crc: crc32fast::Hasher::new(),
            json_len: 0,
            failed: None,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        self.crc.update(data);
        self.json_len += data.len();
        self.run(data, FlushCompress::None);
    }

    /// Flushes everything fed so far to a byte boundary.
    fn sync(&mut self) {
        self.run(&[], FlushCompress::Sync);
    }

    fn run(&mut self, mut input: &[u8], flush: FlushCompress) {
        loop {
            if self.out.capacity() - self.out.len() < 1024 {
                self.out.reserve(input.len() / 2 + 16 * 1024);
            }
            let before = self.deflate.total_in();
            let room_before = self.out.capacity() - self.out.len();
            if self.failed.is_some() {
                return;
            }
            if let Err(e) = self.deflate.compress_vec(input, &mut self.out, flush) {
                self.failed = Some(e);
                return;
            }
            let consumed = (self.deflate.total_in() - before) as usize;
            input = &input[consumed..];
            let filled = self.out.len() == self.out.capacity();
            let stuck = consumed == 0 && self.out.capacity() - self.out.len() == room_before;
            if input.is_empty() && (flush == FlushCompress::None || !filled) || stuck {
                return;
            }
        }
    }

    fn checkpoint(&self, end: usize) -> Checkpoint {
        Checkpoint {
            end,
            out_len: self.out.len(),
            crc: self.crc.clone(),
            json_len: self.json_len,
        }
    }

    /// Cuts the stream back to `cp` and ends it with `tail` in final stored
    /// blocks and the gzip trailer.
    fn close(mut self, cp: Checkpoint, tail: &[u8]) -> (Vec<u8>, usize, usize) {
        self.out.truncate(cp.out_len);
        let blocks = tail.len().div_ceil(MAX_STORED);
        for (n, block) in tail.chunks(MAX_STORED).enumerate() {
            let len = block.len() as u16;
            self.out.push(u8::from(n + 1 == blocks));
            self.out.extend_from_slice(&len.to_le_bytes());
            self.out.extend_from_slice(&(!len).to_le_bytes());
            self.out.extend_from_slice(block);
        }
        let mut crc = cp.crc;
        crc.update(tail);
        let json_len = cp.json_len + tail.len();
        self.out.extend_from_slice(&crc.finalize().to_le_bytes());
        self.out.extend_from_slice(&(json_len as u32).to_le_bytes());
        (self.out, cp.end, json_len)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use sluice_core::wire::{Item, decode_body};

    /// `len` pseudo-random letters from `seed` (xorshift): text that gzip
    /// cannot shrink much, unlike any run of one byte.
    pub(crate) fn letters(len: usize, seed: u64) -> String {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect()
    }

    /// Decodes every body and checks sizes, order and envelope fields.
    fn check(events: &[Vec<u8>], packed: &[Packed], max: usize) {
        let mut next = 0;
        for p in packed {
            assert!(p.body.len() <= max, "{} > {max}", p.body.len());
            assert_eq!(p.events.start, next);
            assert!(!p.events.is_empty());
            next = p.events.end;
            let decoded = decode_body(p.body.as_bytes());
            let id = decoded.envelope_id.clone().expect("an envelope id");
            assert_eq!(id.len(), 36);
            let got: Vec<Value> = decoded
                .items
                .into_iter()
                .map(|i| match i {
                    Item::Record(r) => Value::Object(r),
                    Item::Invalid { reason, .. } => panic!("invalid item: {reason}"),
                })
                .collect();
            let want: Vec<Value> = events[p.events.clone()]
                .iter()
                .map(|e| serde_json::from_slice(e).unwrap())
                .collect();
            assert_eq!(got, want);
        }
        assert_eq!(next, events.len());
    }

    fn tune_like(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                json!({
                    "action": "click", "event_id": format!("{i:08x}-8f1e-11e6-9a2e-067e12251fb6"),
                    "offer_id": i % 300, "affiliate_id": 1000 + i % 77, "ip": format!("10.0.{}.{}", i / 256 % 256, i % 256),
                    "transaction_id": format!("{:030x}", i * 7919), "user_agent": "Mozilla/5.0 (Linux; Android 10)",
                    "country_code": "US", "currency": "EUR", "datetime": 1476127152 + i,
                })
                .to_string()
                .into_bytes()
            })
            .collect()
    }

    #[test]
    fn identities_travel_beside_the_events() {
        // Many requests of 3 events, every other one keyed, one of them with
        // a key so long the spans need more than one stored block.
        let events = tune_like(30_000);
        let long = "k".repeat(60_000);
        let keys: Vec<String> = (0..10_000).map(|r| format!("{r:032x}")).collect();
        let identities: Vec<Identity<'_>> = (0..events.len())
            .map(|i| {
                let r = i / 3;
                match r % 2 {
                    0 if r == 4 => Some((long.as_str(), (i % 3) as u64)),
                    0 => Some((keys[r].as_str(), (i % 3) as u64)),
                    _ => None,
                }
            })
            .collect();
        let max = 256 * 1024;
        let packed = pack_keyed(&events, &identities, max).unwrap();
        check(&events, &packed, max);
        for p in &packed {
            let decoded = decode_body(p.body.as_bytes());
            let (ids, origin) =
                sluice_core::idempotency::per_event(&decoded.idempotency, p.events.len());
            for (at, i) in p.events.clone().enumerate() {
                let got = origin[at].map(|j| (ids[j as usize].key.as_str(), ids[j as usize].index));
                let want = identities[i]
                    .map(|(k, n)| (k, n as i64))
                    .filter(|(k, _)| k.len() <= 64);
                assert_eq!(got, want, "event {i}");
            }
        }
    }

    #[test]
    fn envelopes_are_full_and_decode() {
        let events = tune_like(20_000);
        let max = 262_144;
        let packed = pack(&events, max).unwrap();
        check(&events, &packed, max);
        // Every envelope but the last is nearly full.
        for p in &packed[..packed.len() - 1] {
            assert!(p.body.len() > max * 97 / 100, "{}", p.body.len());
        }
        assert!(packed[0].events.len() > 1_000, "{}", packed[0].events.len());
    }

    #[test]
    fn incompressible_events_and_small_limits() {
        let mut seed = 7u64;
        let mut noise = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let events: Vec<Vec<u8>> = (0..300)
            .map(|i| {
                let text: String = (0..(i % 50) * 40)
                    .map(|_| char::from(b'!' + (noise() % 90) as u8))
                    .filter(|c| *c != '"' && *c != '\\')
                    .collect();
                json!({"n": i, "noise": text}).to_string().into_bytes()
            })
            .collect();
        for max in [MIN_MESSAGE_BYTES * 4, 8 * 1024, 65_536, 262_144, 1_048_576] {
            let packed = pack(&events, max).unwrap();
            check(&events, &packed, max);
        }
    }

    #[test]
    fn an_event_larger_than_a_message_is_named() {
        let mut events = tune_like(5);
        events.insert(3, json!({"big": "x".repeat(5000)}).to_string().into_bytes());
        // A run of one byte compresses to nothing: incompressible text is needed.
        let big = letters(40_000, 88_172_645_463_325_252);
        events[3] = json!({ "big": big }).to_string().into_bytes();
        assert_eq!(
            pack(&events, 16 * 1024).unwrap_err(),
            PackError::TooLarge { index: 3 }
        );
        assert!(!fits_alone(&events[3], 16 * 1024));
        assert!(fits_alone(&events[3], 65_536));
        assert!(fits_alone(&events[0], 16 * 1024));
        let packed = pack(&events, 65_536).unwrap();
        check(&events, &packed, 65_536);
    }

    #[test]
    fn always_fits_is_true() {
        let max = 8 * 1024;
        // Worst case: every byte incompressible, just under the bound.
        let mut x = 1u32;
        let text: String = (0..always_fits(max) - 12)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                char::from(b'#' + ((x >> 16) % 89) as u8)
            })
            .map(|c| if c == '\\' { 'z' } else { c })
            .collect();
        let event = json!({ "t": text }).to_string().into_bytes();
        assert!(event.len() <= always_fits(max));
        assert!(pack(&[&event], max).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn packs_round_trip(
            events in prop::collection::vec(
                prop::collection::btree_map("[a-z]{1,6}", ".{0,300}", 0..6)
                    .prop_map(|m| serde_json::to_vec(&m).unwrap()),
                1..200,
            ),
            max in prop::sample::select(vec![1024usize, 2048, 4096, 16_384, 262_144]),
        ) {
            match pack(&events, max) {
                Ok(packed) => check(&events, &packed, max),
                // The packer's promise: an event no larger than `always_fits`
                // is never refused. (Re-packing it alone is no oracle: each
                // envelope's id and time are new, so its size varies by bytes.)
                Err(PackError::TooLarge { index }) => {
                    prop_assert!(events[index].len() > always_fits(max))
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
