//! Where pages begin, remembered so that `page=N` need not skip `N·50` rows.
//!
//! A page number is an offset in disguise: served with `OFFSET`, every page
//! of a crawl costs as much as all the pages before it, and a full crawl is
//! quadratic. Each account has a change counter in the database that every
//! write to its customers moves, in the write's own transaction. Once a page
//! has been served, the position of its first row and of the next page's
//! first row are remembered with the counter they were read at; a later
//! request for either page reads the counter in the same snapshot as a
//! keyset query starting at the remembered row, and falls back to `OFFSET`
//! only when the counter has moved. Because the counter lives in the
//! database, a change made through another server is seen too.
//!
//! Known shortcoming: any change to an account makes all its remembered
//! starts stale, so a crawl of an account written to between every two of
//! its pages goes back to skipping rows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{AccountId, CustomerPage};
use crate::domain::PAGE_SIZE;
use crate::domain::customer::Customer;

/// The position of a row in list order: its sort key, then its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub sort_key: Vec<u8>,
    pub id: i64,
}

/// The rows read for a page, each with its sort key.
pub type PageRows = Vec<(Customer, Vec<u8>)>;

/// Where a page's rows start.
#[derive(Debug, Clone)]
pub enum Start {
    /// Skip this many rows from the account's first.
    Offset(i64),
    /// Start at this row, inclusive.
    At(Position),
}

/// Which page of which list. A list filter, when there is one, belongs here
/// too, since the same page number starts elsewhere in a filtered list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    pub account: AccountId,
    pub page: u64,
}

struct Entry {
    /// The account's change counter when `start` was read.
    version: i64,
    start: Position,
    last_used: u64,
}

/// A bounded map from page to where it starts. Past its capacity the least
/// recently used half is dropped at once, which keeps each insertion cheap
/// on average without a linked list.
pub struct PageStarts {
    capacity: usize,
    inner: Mutex<Inner>,
    /// Pages past the first served from a remembered start, and by offset.
    remembered: AtomicU64,
    skipped: AtomicU64,
}

struct Inner {
    entries: HashMap<PageKey, Entry>,
    clock: u64,
}

/// The most page starts a process remembers: a few hundred kilobytes at most.
pub const DEFAULT_CAPACITY: usize = 4096;

impl Default for PageStarts {
    fn default() -> Self {
        PageStarts::new(DEFAULT_CAPACITY)
    }
}

impl PageStarts {
    pub fn new(capacity: usize) -> PageStarts {
        PageStarts {
            capacity: capacity.max(2),
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                clock: 0,
            }),
            remembered: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map holds no invariant a panic could break half-way.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where `key`'s page starts, as last seen, and the counter it was seen
    /// at; the caller checks that counter against the database's.
    pub fn get(&self, key: &PageKey) -> Option<(i64, Position)> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.entries.get_mut(key)?;
        entry.last_used = now;
        Some((entry.version, entry.start.clone()))
    }

    pub fn record(&self, key: PageKey, version: i64, start: Position) {
        let mut inner = self.lock();
        inner.clock += 1;
        let last_used = inner.clock;
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(&key) {
            let mut ages: Vec<u64> = inner.entries.values().map(|e| e.last_used).collect();
            let middle = ages.len() / 2;
            let (_, &mut cutoff, _) = ages.select_nth_unstable(middle);
            inner.entries.retain(|_, e| e.last_used > cutoff);
        }
        inner.entries.insert(
            key,
            Entry {
                version,
                start,
                last_used,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Notes how a page past the first was served: from a remembered start
    /// or by skipping rows.
    pub fn served(&self, from_remembered_start: bool) {
        let counter = if from_remembered_start {
            &self.remembered
        } else {
            &self.skipped
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Figures for `/metrics`.
    pub fn stats(&self) -> Vec<super::Stat> {
        vec![
            (
                "rekisteri_store_pages_remembered_total",
                "Pages past the first read from a remembered start.",
                self.remembered.load(Ordering::Relaxed) as f64,
            ),
            (
                "rekisteri_store_pages_skipped_total",
                "Pages past the first read by skipping the rows before them.",
                self.skipped.load(Ordering::Relaxed) as f64,
            ),
            (
                "rekisteri_store_page_starts",
                "Page starts remembered at this moment.",
                self.len() as f64,
            ),
        ]
    }
}

/// How to read page `page` given what the cache knows: the start to query
/// from, and the counter the answer must have been read at to be right
/// (`None` when any counter will do, as for an offset).
pub fn plan(starts: &PageStarts, key: &PageKey) -> (Start, Option<i64>) {
    if key.page <= 1 {
        return (Start::Offset(0), None);
    }
    match starts.get(key) {
        Some((version, position)) => (Start::At(position), Some(version)),
        None => (Start::Offset(offset_of(key.page)), None),
    }
}

/// The rows a page skips, saturated: a page this far out is past the end of
/// any account.
pub fn offset_of(page: u64) -> i64 {
    let offset = page.saturating_sub(1).saturating_mul(PAGE_SIZE);
    i64::try_from(offset).unwrap_or(i64::MAX)
}

/// Turns the up to `PAGE_SIZE + 1` rows read for a page, each with its sort
/// key, at counter `version`, into the page, and remembers where this page
/// and the next one start.
pub fn finish(
    starts: &PageStarts,
    key: &PageKey,
    version: i64,
    mut rows: PageRows,
) -> CustomerPage {
    let page_size = PAGE_SIZE as usize;
    let position = |(customer, sort_key): &(Customer, Vec<u8>)| Position {
        sort_key: sort_key.clone(),
        id: customer.id,
    };
    if let Some(first) = rows.first().filter(|_| key.page > 1) {
        starts.record(key.clone(), version, position(first));
    }
    if let Some(next) = rows.get(page_size) {
        let following = PageKey {
            page: key.page.saturating_add(1),
            ..key.clone()
        };
        starts.record(following, version, position(next));
    }
    let has_more = rows.len() > page_size;
    rows.truncate(page_size);
    CustomerPage {
        customers: rows.into_iter().map(|(customer, _)| customer).collect(),
        has_more,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(page: u64) -> PageKey {
        PageKey {
            account: AccountId(1),
            page,
        }
    }

    fn at(id: i64) -> Position {
        Position {
            sort_key: vec![id as u8],
            id,
        }
    }

    #[test]
    fn the_cache_stays_within_its_capacity_and_keeps_recent_entries() {
        let starts = PageStarts::new(10);
        for page in 0..100 {
            starts.record(key(page), 1, at(page as i64));
            assert!(starts.len() <= 10);
        }
        assert_eq!(starts.get(&key(99)), Some((1, at(99))));
        assert_eq!(starts.get(&key(0)), None);
    }

    #[test]
    fn page_one_never_needs_the_cache() {
        let starts = PageStarts::new(10);
        assert!(matches!(plan(&starts, &key(1)), (Start::Offset(0), None)));
        assert!(matches!(plan(&starts, &key(3)), (Start::Offset(100), None)));
        starts.record(key(3), 7, at(5));
        assert!(matches!(plan(&starts, &key(3)), (Start::At(_), Some(7))));
    }

    #[test]
    fn far_pages_saturate() {
        assert_eq!(offset_of(u64::MAX), i64::MAX);
    }
}
