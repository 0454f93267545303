//! One subscription's deliveries awaiting acknowledgement, in delivery order (tags ascending).
//! Runs on the connection's worker.
//!
//! A `client-individual` ACK may settle any of them, not only the oldest: removing one from the
//! middle of a `VecDeque` moves up to half of it (milliseconds with a large prefetch). Instead a
//! settled entry becomes a tombstone and leaves once everything older has: every operation is
//! O(1) amortised or O(log n), and tombstones never outnumber the live entries of the same
//! window (a subscription never has more than its prefetch delivered and unsettled).
//!
//! Invariant: tags strictly ascend from front to back, tombstones included; the front entry is
//! never a tombstone.

use super::Pending;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct PendingList {
    slots: VecDeque<(Pending, bool)>,
    live: usize,
}

impl PendingList {
    /// A new delivery (its tag above every earlier one).
    pub fn push_back(&mut self, p: Pending) {
        self.slots.push_back((p, true));
        self.live += 1;
    }

    /// Deliveries not yet settled.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Slots held, tombstones included (for the memory count).
    pub fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    fn index_of(&self, tag: u64) -> Option<usize> {
        let i = self.slots.binary_search_by_key(&tag, |(p, _)| p.tag).ok()?;
        self.slots[i].1.then_some(i)
    }

    /// Whether the delivery `tag` is awaiting acknowledgement.
    pub fn contains(&self, tag: u64) -> bool {
        self.index_of(tag).is_some()
    }

    /// The unsettled deliveries, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.slots.iter().filter(|(_, live)| *live).map(|(p, _)| p)
    }

    /// Settle `tag` and, if `cumulative` (`client` mode), everything older; returns what was
    /// settled, oldest first (nothing if `tag` is not pending).
    pub fn settle(&mut self, tag: u64, cumulative: bool) -> smallvec::SmallVec<[Pending; 4]> {
        let mut done = smallvec::SmallVec::new();
        let Some(i) = self.index_of(tag) else { return done };
        if cumulative {
            done.extend(self.slots.drain(..=i).filter(|(_, live)| *live).map(|(p, _)| p));
        } else {
            self.slots[i].1 = false;
            done.push(self.slots[i].0);
        }
        self.live -= done.len();
        while self.slots.front().is_some_and(|(_, live)| !*live) {
            self.slots.pop_front();
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(tags: impl IntoIterator<Item = u64>) -> PendingList {
        let mut l = PendingList::default();
        for tag in tags {
            l.push_back(Pending { tag, msg_id: tag * 10, seq: tag });
        }
        l
    }

    fn tags(l: &PendingList) -> Vec<u64> {
        l.iter().map(|p| p.tag).collect()
    }

    #[test]
    fn individual_settles_leave_tombstones_that_go_with_the_front() {
        let mut l = list(1..=5);
        assert_eq!(l.settle(3, false).iter().map(|p| p.tag).collect::<Vec<_>>(), [3]);
        assert!(l.settle(3, false).is_empty(), "settled once");
        assert!(!l.contains(3) && l.contains(4));
        assert_eq!((tags(&l), l.len(), l.slots.len()), (vec![1, 2, 4, 5], 4, 5));
        l.settle(1, false);
        l.settle(2, false);
        assert_eq!((tags(&l), l.slots.len()), (vec![4, 5], 2), "the tombstone of 3 left with the front");
    }

    #[test]
    fn cumulative_settles_skip_tombstones() {
        let mut l = list(1..=6);
        l.settle(2, false);
        l.settle(5, false);
        assert_eq!(l.settle(4, true).iter().map(|p| p.tag).collect::<Vec<_>>(), [1, 3, 4]);
        assert_eq!((tags(&l), l.len(), l.slots.len()), (vec![6], 1, 1));
        assert!(l.settle(99, true).is_empty());
        l.settle(6, true);
        assert!(l.is_empty() && l.slots.is_empty());
    }

    #[test]
    fn settling_the_middle_of_a_large_window_moves_nothing() {
        let mut l = list(0..100_000);
        for tag in (1..100_000).rev() {
            assert_eq!(l.settle(tag, false).len(), 1);
        }
        assert_eq!(l.slots.len(), 100_000, "all behind the unsettled front");
        l.settle(0, false);
        assert!(l.is_empty() && l.slots.is_empty());
    }
}
