//! The requests of a flush cut into messages: which events of which
//! request each message body holds, so that acknowledgements find their
//! requests, and which request an event too large alone belongs to.

use std::ops::Range;

use crate::events::Events;
use crate::pack::{self, PackError};

/// Events `range` of request `request` in a batch.
pub(super) type Part = (usize, Range<usize>);

/// A message body fresh from packing.
#[derive(Debug)]
pub(super) struct Packed {
    pub(super) body: String,
    pub(super) parts: Vec<Part>,
    pub(super) json_bytes: usize,
}

/// Packed messages, or why they could not be.
pub(super) type PackResult = Result<Vec<Packed>, Unpacked>;

/// Why parts of a batch could not be packed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unpacked {
    /// Event `index` of request `request` is too large alone.
    TooLarge { request: usize, index: usize },
    /// The compressor failed: none of the parts' messages can be sent.
    Failed(String),
}

/// Packs `parts` of `events` into message bodies of at most `max` bytes.
pub(super) fn pack_parts(events: &[Events], parts: &[Part], max: usize) -> PackResult {
    let mut slices = Vec::new();
    let mut owners = Vec::new();
    for (request, range) in parts {
        for i in range.clone() {
            slices.push(events[*request].get(i));
            owners.push((*request, i));
        }
    }
    let identities: Vec<pack::Identity<'_>> =
        if parts.iter().any(|(r, _)| events[*r].key().is_some()) {
            owners
                .iter()
                .map(|&(request, i)| events[request].key().map(|key| (key, i as u64)))
                .collect()
        } else {
            Vec::new()
        };
    let packed = pack::pack_keyed(&slices, &identities, max).map_err(|e| match e {
        PackError::TooLarge { index } => {
            let (request, index) = owners[index];
            Unpacked::TooLarge { request, index }
        }
        PackError::Compress(reason) => Unpacked::Failed(reason),
    })?;
    Ok(packed
        .into_iter()
        .map(|p| {
            let mut parts: Vec<Part> = Vec::new();
            for &(request, i) in &owners[p.events] {
                match parts.last_mut() {
                    Some((r, range)) if *r == request && range.end == i => range.end = i + 1,
                    _ => parts.push((request, i..i + 1)),
                }
            }
            Packed {
                body: p.body,
                parts,
                json_bytes: p.json_bytes,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(n: usize, size: usize) -> Events {
        let mut e = Events::default();
        for i in 0..n {
            let pad: String = (0..size)
                .map(|j| char::from(b'a' + ((i * 31 + j * j * 7) % 26) as u8))
                .collect();
            e.push(format!("{{\"i\":{i},\"pad\":\"{pad}\"}}").as_bytes());
        }
        e
    }

    #[test]
    fn parts_follow_requests_across_messages() {
        let all = vec![events(3, 10), events(500, 200), events(2, 10)];
        let parts: Vec<Part> = vec![(0, 0..3), (1, 0..500), (2, 0..2)];
        let packed = pack_parts(&all, &parts, 4096).unwrap();
        assert!(packed.len() > 1);
        let mut seen: Vec<(usize, usize)> = Vec::new();
        for p in &packed {
            for (r, range) in &p.parts {
                seen.extend(range.clone().map(|i| (*r, i)));
            }
        }
        let expected: Vec<(usize, usize)> = parts
            .iter()
            .flat_map(|(r, range)| range.clone().map(move |i| (*r, i)))
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn too_large_names_request_and_index() {
        let mut big = events(2, 10);
        let text = crate::pack::tests::letters(20_000, 1);
        big.push(format!("{{\"t\":\"{text}\"}}").as_bytes());
        let all = vec![events(2, 10), big];
        let parts: Vec<Part> = vec![(0, 0..2), (1, 0..3)];
        assert_eq!(
            pack_parts(&all, &parts, 8192).unwrap_err(),
            Unpacked::TooLarge {
                request: 1,
                index: 2
            }
        );
    }
}
