//! Claimed identities as runs of event indexes, one database row per key.
//!
//! A request's events are consecutive indexes of one key, so the identities
//! a writer claims are stored as sorted, disjoint half-open ranges per key
//! (`{[0,37),[37,100)}`, PostgreSQL's `int8multirange` text form, used by
//! the SQLite table too) instead of one row per event: a claim then costs
//! a few statements per key, not a row per event. A retry may split the
//! same request differently over envelopes, so a claim subtracts what the
//! key already holds and keeps exactly the events not claimed before.

use std::collections::{BTreeMap, HashMap};

use super::Identity;

/// Sorted, disjoint, non-adjacent half-open ranges of event indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runs(Vec<(i64, i64)>);

impl Runs {
    /// Runs from ranges in any order, overlapping or not.
    pub fn from_ranges(mut ranges: Vec<(i64, i64)>) -> Self {
        ranges.retain(|(start, end)| start < end);
        ranges.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Self(merged)
    }

    /// Parses the text form, `{}` or `{[a,b),[c,d)}`; `None` when it is not
    /// one (a table edited by hand).
    pub fn parse(text: &str) -> Option<Self> {
        let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?.trim();
        if inner.is_empty() {
            return Some(Self::default());
        }
        let mut ranges = Vec::new();
        for range in inner.strip_suffix(')')?.split("),") {
            let (start, end) = range.trim().strip_prefix('[')?.split_once(',')?;
            ranges.push((start.trim().parse().ok()?, end.trim().parse().ok()?));
        }
        Some(Self::from_ranges(ranges))
    }

    /// The text form (`{}` when empty).
    pub fn to_text(&self) -> String {
        let ranges: Vec<String> = self.0.iter().map(|(s, e)| format!("[{s},{e})")).collect();
        format!("{{{}}}", ranges.join(","))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many indexes the runs hold.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|(s, e)| e.abs_diff(*s)).sum()
    }

    /// The indexes in `self` or `other`.
    pub fn union(&self, other: &Runs) -> Runs {
        Self::from_ranges(self.0.iter().chain(&other.0).copied().collect())
    }

    /// The indexes of `self` that are not in `other`.
    pub fn minus(&self, other: &Runs) -> Runs {
        let mut out = Vec::new();
        let mut others = other.0.iter().peekable();
        for &(mut start, end) in &self.0 {
            while let Some(&&(o_start, o_end)) = others.peek() {
                if o_end <= start {
                    others.next();
                    continue;
                }
                if o_start >= end {
                    break;
                }
                if o_start > start {
                    out.push((start, o_start));
                }
                start = start.max(o_end);
                if o_end >= end {
                    break;
                }
                others.next();
            }
            if start < end {
                out.push((start, end));
            }
        }
        Runs(out)
    }

    /// Removes `index`; false when it was not there.
    fn take(&mut self, index: i64) -> bool {
        let at = self.0.partition_point(|(_, end)| *end <= index);
        let Some(&(start, end)) = self.0.get(at).filter(|(start, _)| *start <= index) else {
            return false;
        };
        match (start == index, end == index + 1) {
            (true, true) => {
                self.0.remove(at);
            }
            (true, false) => self.0[at].0 = index + 1,
            (false, true) => self.0[at].1 = index,
            (false, false) => {
                self.0[at].1 = index;
                self.0.insert(at + 1, (index + 1, end));
            }
        }
        true
    }
}

/// Whether an identity can be held in a run (`index + 1` must not
/// overflow); [`idempotency::per_event`](super::per_event) makes only such.
fn representable(identity: &Identity) -> bool {
    (0..i64::MAX).contains(&identity.index)
}

/// The identities one write asks for, as runs per key, keys sorted (the
/// order in which concurrent writers lock them, so they cannot deadlock).
#[derive(Debug, Default)]
pub struct Claim<'a> {
    wanted: BTreeMap<&'a str, Runs>,
}

impl<'a> Claim<'a> {
    pub fn new(identities: impl IntoIterator<Item = &'a Identity>) -> Self {
        let mut ranges: BTreeMap<&'a str, Vec<(i64, i64)>> = BTreeMap::new();
        let mut current: Option<(&'a str, i64, i64)> = None;
        for identity in identities.into_iter().filter(|i| representable(i)) {
            match &mut current {
                Some((key, _, end)) if *key == identity.key && *end == identity.index => {
                    *end += 1;
                }
                _ => {
                    if let Some((key, start, end)) = current {
                        ranges.entry(key).or_default().push((start, end));
                    }
                    current = Some((&identity.key, identity.index, identity.index + 1));
                }
            }
        }
        if let Some((key, start, end)) = current {
            ranges.entry(key).or_default().push((start, end));
        }
        Self {
            wanted: ranges
                .into_iter()
                .map(|(key, ranges)| (key, Runs::from_ranges(ranges)))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.wanted.is_empty()
    }

    /// Each key and the runs asked for it, keys in sorted order.
    pub fn wanted(&self) -> impl Iterator<Item = (&'a str, &Runs)> {
        self.wanted.iter().map(|(key, runs)| (*key, runs))
    }

    /// Given what keys held before this claim (a key not in `before` held
    /// nothing), the runs this claim adds, per key.
    pub fn fresh(&self, before: &HashMap<String, Runs>) -> Fresh<'a> {
        Fresh(
            self.wanted
                .iter()
                .map(|(key, wanted)| {
                    let fresh = match before.get(*key) {
                        Some(held) => wanted.minus(held),
                        None => wanted.clone(),
                    };
                    (*key, fresh)
                })
                .collect(),
        )
    }
}

/// The identities a claim won, handed out once each.
#[derive(Debug)]
pub struct Fresh<'a>(HashMap<&'a str, Runs>);

impl Fresh<'_> {
    /// The runs won for each key (empty ones included).
    pub fn runs(&self) -> impl Iterator<Item = (&str, &Runs)> {
        self.0.iter().map(|(key, runs)| (*key, runs))
    }

    /// Whether the event of `identity` is to be stored: true the first time
    /// a won identity is asked for, false for one claimed before or already
    /// handed out (the same identity twice in one write). An identity that
    /// no run can hold is stored, as unkeyed.
    pub fn take(&mut self, identity: &Identity) -> bool {
        if !representable(identity) {
            return true;
        }
        self.0
            .get_mut(identity.key.as_str())
            .is_some_and(|runs| runs.take(identity.index))
    }

    /// One flag per identity, in order (see [`take`](Self::take)).
    pub fn flags(&mut self, identities: &[Identity]) -> Vec<bool> {
        identities.iter().map(|i| self.take(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[(&str, i64)]) -> Vec<Identity> {
        list.iter()
            .map(|(k, i)| Identity {
                key: (*k).into(),
                index: *i,
            })
            .collect()
    }

    #[test]
    fn text_form_round_trips_and_normalises() {
        let runs = Runs::parse("{[40,100),[0,37),[37,38)}").unwrap();
        assert_eq!(runs.to_text(), "{[0,38),[40,100)}");
        assert_eq!(runs.count(), 98);
        assert_eq!(Runs::parse("{}").unwrap(), Runs::default());
        assert_eq!(Runs::default().to_text(), "{}");
        for bad in ["", "[0,1)", "{[a,1)}", "{[0,1}", "{0,1}"] {
            assert_eq!(Runs::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn minus_keeps_what_was_not_held() {
        let held = Runs::from_ranges(vec![(0, 37), (50, 60)]);
        let wanted = Runs::from_ranges(vec![(0, 100), (200, 210)]);
        assert_eq!(
            wanted.minus(&held).to_text(),
            "{[37,50),[60,100),[200,210)}"
        );
        assert!(held.minus(&wanted).is_empty());
        assert_eq!(held.minus(&Runs::default()), held);
    }

    #[test]
    fn a_retry_split_differently_wins_only_new_events() {
        // The first attempt stored events 0..37 and 50..60 of key k.
        let before: HashMap<String, Runs> =
            [("k".to_owned(), Runs::from_ranges(vec![(0, 37), (50, 60)]))].into();
        let retry = ids(&[("k", 36), ("k", 37), ("j", 0), ("k", 59), ("k", 60)]);
        let claim = Claim::new(&retry);
        let mut fresh = claim.fresh(&before);
        assert_eq!(fresh.flags(&retry), vec![false, true, true, false, true]);
    }

    #[test]
    fn an_identity_twice_in_one_claim_is_won_once() {
        let twice = ids(&[("k", 1), ("k", 2), ("k", 1), ("k", 3), ("k", 2)]);
        let claim = Claim::new(&twice);
        let wanted: Vec<_> = claim.wanted().map(|(k, r)| (k, r.to_text())).collect();
        assert_eq!(wanted, vec![("k", "{[1,4)}".to_owned())]);
        let mut fresh = claim.fresh(&HashMap::new());
        assert_eq!(fresh.flags(&twice), vec![true, true, false, true, false]);
    }

    #[test]
    fn identities_no_run_holds_are_stored() {
        let odd = ids(&[("k", -1), ("k", i64::MAX), ("k", 0)]);
        let claim = Claim::new(&odd);
        let mut fresh = claim.fresh(&HashMap::new());
        assert_eq!(fresh.flags(&odd), vec![true, true, true]);
    }
}
