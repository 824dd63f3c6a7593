//! The events of one request, held compactly between parsing and packing.
//!
//! Each event is kept as its compact JSON text, back to back in one buffer:
//! one allocation per request instead of a tree per event, and exactly the
//! bytes the packer copies into an envelope.

/// Parsed events: compact JSON objects, in the order they arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Events {
    data: Vec<u8>,
    ends: Vec<usize>,
    /// The identity key of the request's `Idempotency-Key`, if it had one:
    /// event *i* then has the identity (key, *i*).
    key: Option<String>,
}

impl Events {
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            ends: Vec::new(),
            key: None,
        }
    }

    /// Gives the events the identity key of their request's `Idempotency-Key`.
    pub fn set_key(&mut self, key: Option<String>) {
        self.key = key;
    }

    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Appends one event's JSON text.
    pub fn push(&mut self, json: &[u8]) {
        self.data.extend_from_slice(json);
        self.ends.push(self.data.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The JSON text of event `index`.
    pub fn get(&self, index: usize) -> &[u8] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.data[start..self.ends[index]]
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Total JSON bytes of all events.
    pub fn json_bytes(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_and_get() {
        let mut e = Events::default();
        assert!(e.is_empty());
        e.push(b"{\"a\":1}");
        e.push(b"{}");
        assert_eq!(e.len(), 2);
        assert_eq!(e.get(0), b"{\"a\":1}");
        assert_eq!(e.get(1), b"{}");
        assert_eq!(e.json_bytes(), 9);
        assert_eq!(
            e.iter().collect::<Vec<_>>(),
            vec![b"{\"a\":1}".as_slice(), b"{}"]
        );
    }
}
