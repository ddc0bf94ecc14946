//! The greeting log: the index that lists greetings newest first at the cost of a page.
//!
//! Every greeting takes the next *position* from one counter (`increment`, atomic on every
//! Spin store) and is written together with its log entry `greeting-log:<position>` = its id
//! (one `set-many`). Records from before the log are given positions below the first new
//! one, counting down from a second counter, so creating never waits for them and they are
//! listed after every new greeting. A page walks positions downwards from its cursor, so it
//! reads what it lists, not the whole store. Deleting a greeting blanks its entry with a
//! compare-and-swap, and only the caller whose swap won counts it in its block's dead count:
//! blocks of [`BLOCK`] positions, and blocks of blocks up to [`LEVELS`] levels, so a walk
//! steps over any run of deleted greetings in a few reads. An entry is blank when it holds no
//! greeting id: empty, or a deleter's tombstone.
//!
//! Every key is a plain key of the store, written only through interfaces that Spin 3.x,
//! Spin 4 and greeter-host all serve the same way (single-key calls, `set-many`,
//! `increment`, compare-and-swap on keys that exist: Spin's SQLite store does not make a swap
//! from "absent" atomic, and its Redis store cannot `get-many`), so a fleet mixing runtimes
//! shares one log.
//!
//! A crash leaves nothing to repair: a position taken but never written is a gap that the
//! walk steps over; an entry whose record has another position (or none) is ignored; an
//! entry blanked but not yet counted only costs its block one read per walk, and one whose
//! record was deleted but that was never blanked (a delete that failed half-way and was not
//! retried) two reads, and keeps its block from being skipped whole.

use crate::errors::{ApiError, ErrorCode};
use crate::ids::GreetingId;
use crate::platform::{KeyValue, counter_value};

/// How many positions new greetings have taken, counting up from [`FIRST_NEW`].
const HEAD_KEY: &str = "greeting-log:head";
/// How many positions records from before the log have taken, counting down below it.
const TAIL_KEY: &str = "greeting-log:tail";
/// The first new greeting's position: room below for 2^40 older records, and a multiple of
/// every block width, so blocks never straddle the two ranges.
const FIRST_NEW: u64 = 1 << 40;
const ENTRY_PREFIX: &str = "greeting-log:";
/// Positions per block, and blocks per block of the level above.
const BLOCK: u64 = 64;
const BLOCK_BITS: u32 = BLOCK.trailing_zeros();
/// Levels of dead counts: the top level's blocks hold 64^6 (about 7 * 10^10) positions.
const LEVELS: u32 = 6;

/// The key of the log entry at `position`.
fn entry_key(position: u64) -> String {
    format!("{ENTRY_PREFIX}{position}")
}

/// The key counting the dead positions (level 1) or dead blocks (above) of `position`'s
/// block at `level`.
fn dead_key(level: u32, position: u64) -> String {
    format!(
        "greeting-log:dead:{level}:{}",
        position >> (BLOCK_BITS * level)
    )
}

async fn counter(store: &dyn KeyValue, key: &str) -> Result<u64, ApiError> {
    match store.get(key).await? {
        None => Ok(0),
        Some(stored) => counter_value(&stored)
            .and_then(|count| u64::try_from(count).ok())
            .ok_or_else(|| {
                let message = format!("The store's {key} is not a counter.");
                ApiError::new(ErrorCode::InternalError, message)
            }),
    }
}

/// Takes the next position, above all others. It is the greeting's once [`entry`] is stored
/// with its record.
pub async fn take_position(store: &dyn KeyValue) -> Result<u64, ApiError> {
    Ok(FIRST_NEW - 1 + take(store, HEAD_KEY, u64::MAX - FIRST_NEW).await?)
}

/// Takes the next position below all others, for a record from before the log.
pub async fn take_older_position(store: &dyn KeyValue) -> Result<u64, ApiError> {
    Ok(FIRST_NEW - take(store, TAIL_KEY, FIRST_NEW - 1).await?)
}

/// Increments the counter `key`, which may reach `most`.
async fn take(store: &dyn KeyValue, key: &str, most: u64) -> Result<u64, ApiError> {
    let count = store.increment(key, 1).await?;
    u64::try_from(count)
        .ok()
        .filter(|count| (1..=most).contains(count))
        .ok_or_else(|| {
            let message = format!("The store's {key} is out of range: {count}.");
            ApiError::new(ErrorCode::InternalError, message)
        })
}

/// The log entry to store with the record of greeting `id` at `position`.
pub fn entry(position: u64, id: GreetingId) -> (String, Vec<u8>) {
    (entry_key(position), id.to_string().into_bytes())
}

/// Blanks the entry of `id` at `position` with a tombstone that `nonce` makes the caller's
/// own. Whoever blanks it counts it dead, exactly once however many callers race; an entry
/// already blank (or never written) is left alone. The winner is told by reading its
/// tombstone back when the swap says it lost: Spin's Redis store (3.x and 4) answers
/// `cas-failed` to every swap, also one that wrote (it ends with an `UNWATCH` that carries an
/// argument, which Redis refuses).
pub async fn remove(
    store: &dyn KeyValue,
    position: u64,
    id: GreetingId,
    nonce: u128,
) -> Result<(), ApiError> {
    let key = entry_key(position);
    let tombstone = format!("deleted:{nonce:032x}");
    let won = store
        .compare_and_swap(&key, id.to_string().as_bytes(), tombstone.as_bytes())
        .await?
        || store.get(&key).await?.as_deref() == Some(tombstone.as_bytes());
    if won {
        count_dead(store, position).await?;
    }
    Ok(())
}

async fn count_dead(store: &dyn KeyValue, position: u64) -> Result<(), ApiError> {
    for level in 1..=LEVELS {
        // Only the call that fills a block counts it in the level above.
        if store.increment(&dead_key(level, position), 1).await? != BLOCK as i64 {
            break;
        }
    }
    Ok(())
}

/// Up to `want` live entries below `before` (exclusive; the top of the log when `None`),
/// newest first. `load` turns an entry into an item, or `None` when the record no longer
/// has that position (deleted, or an entry a crash left behind).
pub async fn newest_first<T>(
    store: &dyn KeyValue,
    before: Option<u64>,
    want: usize,
    mut load: impl AsyncFnMut(u64, GreetingId) -> Result<Option<T>, ApiError>,
) -> Result<Vec<(u64, T)>, ApiError> {
    let top = (FIRST_NEW - 1).saturating_add(counter(store, HEAD_KEY).await?);
    let mut position = before.map_or(top, |before| before.saturating_sub(1).min(top));
    // Below the new greetings, the walk ends at the oldest record's position (read once).
    let mut oldest = None;
    let mut found = Vec::new();
    while found.len() < want && position > 0 {
        if position < FIRST_NEW {
            let oldest = match oldest {
                Some(oldest) => oldest,
                None => *oldest.insert(FIRST_NEW - counter(store, TAIL_KEY).await?.min(FIRST_NEW)),
            };
            if position < oldest {
                break;
            }
        }
        let id = store
            .get(&entry_key(position))
            .await?
            .and_then(|bytes| GreetingId::parse(std::str::from_utf8(&bytes).ok()?));
        match id {
            Some(id) => {
                if let Some(item) = load(position, id).await? {
                    found.push((position, item));
                }
                position -= 1;
            }
            None => position = below_dead_blocks(store, position).await?,
        }
    }
    Ok(found)
}

/// The next position to look at below an empty entry: past the largest block around it
/// whose positions are all dead.
async fn below_dead_blocks(store: &dyn KeyValue, position: u64) -> Result<u64, ApiError> {
    let mut lowest = position;
    for level in 1..=LEVELS {
        if counter(store, &dead_key(level, position)).await? < BLOCK {
            break;
        }
        let width = BLOCK_BITS * level;
        lowest = (position >> width) << width;
    }
    Ok(lowest.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{MemoryStore, block_on};
    use crate::platform::{Pending, StoreError};

    /// Counts the store's calls, to show what a walk costs.
    struct Counting<'a> {
        store: &'a MemoryStore,
        calls: std::cell::Cell<usize>,
    }

    impl Counting<'_> {
        fn tick(&self) {
            self.calls.set(self.calls.get() + 1);
        }
    }

    impl KeyValue for Counting<'_> {
        fn get<'a>(&'a self, key: &'a str) -> Pending<'a, Result<Option<Vec<u8>>, StoreError>> {
            self.tick();
            self.store.get(key)
        }
        fn set<'a>(&'a self, key: &'a str, value: &'a [u8]) -> Pending<'a, Result<(), StoreError>> {
            self.tick();
            self.store.set(key, value)
        }
        fn delete<'a>(&'a self, key: &'a str) -> Pending<'a, Result<(), StoreError>> {
            self.tick();
            self.store.delete(key)
        }
        fn exists<'a>(&'a self, key: &'a str) -> Pending<'a, Result<bool, StoreError>> {
            self.tick();
            self.store.exists(key)
        }
        fn get_keys(&self) -> Pending<'_, Result<Vec<String>, StoreError>> {
            self.tick();
            self.store.get_keys()
        }
        fn set_many<'a>(
            &'a self,
            pairs: &'a [(String, Vec<u8>)],
        ) -> Pending<'a, Result<(), StoreError>> {
            self.tick();
            self.store.set_many(pairs)
        }
        fn increment<'a>(
            &'a self,
            key: &'a str,
            delta: i64,
        ) -> Pending<'a, Result<i64, StoreError>> {
            self.tick();
            self.store.increment(key, delta)
        }
        fn compare_and_swap<'a>(
            &'a self,
            key: &'a str,
            expected: &'a [u8],
            value: &'a [u8],
        ) -> Pending<'a, Result<bool, StoreError>> {
            self.tick();
            self.store.compare_and_swap(key, expected, value)
        }
    }

    fn append(store: &dyn KeyValue, n: u64) -> Vec<(u64, GreetingId)> {
        (0..n)
            .map(|i| {
                let id = GreetingId::new(1_000 + i, 0);
                let position = block_on(take_position(store)).unwrap();
                let (key, value) = entry(position, id);
                block_on(store.set_many(&[(key, value)])).unwrap();
                (position, id)
            })
            .collect()
    }

    /// The position of the `n`th new greeting.
    fn nth(n: u64) -> u64 {
        FIRST_NEW - 1 + n
    }

    fn live(store: &dyn KeyValue, before: Option<u64>, want: usize) -> Vec<u64> {
        block_on(newest_first(store, before, want, async |_, id| {
            Ok(Some(id))
        }))
        .unwrap()
        .into_iter()
        .map(|(position, _)| position)
        .collect()
    }

    #[test]
    fn walks_newest_first_from_the_cursor() {
        let store = MemoryStore::default();
        append(&store, 10);
        assert_eq!(live(&store, None, 3), [nth(10), nth(9), nth(8)]);
        assert_eq!(live(&store, Some(nth(8)), 3), [nth(7), nth(6), nth(5)]);
        assert_eq!(live(&store, Some(nth(2)), 3), [nth(1)]);
        assert_eq!(
            live(&store, Some(nth(1_000)), 2),
            [nth(10), nth(9)],
            "a cursor above the head"
        );
        assert!(
            live(&store, Some(5), 3).is_empty(),
            "a cursor below the log"
        );
        assert!(live(&MemoryStore::default(), None, 3).is_empty());
    }

    /// A store whose swaps tell the truth, and one whose swaps that wrote say they did not.
    fn both_stores() -> [MemoryStore; 2] {
        let spin_redis = MemoryStore::default();
        spin_redis.swaps_report_failure.set(true);
        [MemoryStore::default(), spin_redis]
    }

    #[test]
    fn a_removal_counts_once_however_often_it_is_repeated() {
        for store in both_stores() {
            let entries = append(&store, 3);
            let (position, id) = entries[1];
            for nonce in 0..3 {
                block_on(remove(&store, position, id, nonce)).unwrap();
            }
            assert_eq!(
                block_on(counter(&store, &dead_key(1, position))).unwrap(),
                1
            );
            assert_eq!(live(&store, None, 10), [nth(3), nth(1)]);
        }
    }

    #[test]
    fn a_deleted_run_costs_a_few_reads_not_one_per_greeting() {
        for store in both_stores() {
            a_deleted_run_costs_a_few_reads(&store);
        }
    }

    fn a_deleted_run_costs_a_few_reads(store: &MemoryStore) {
        let entries = append(store, 3 * BLOCK * BLOCK);
        // Delete all but the first and the last greeting.
        for (nonce, &(position, id)) in (0..).zip(&entries[1..entries.len() - 1]) {
            block_on(remove(store, position, id, nonce)).unwrap();
        }
        let counting = Counting {
            store,
            calls: Default::default(),
        };
        let first = entries[0].0;
        let last = entries[entries.len() - 1].0;
        assert_eq!(live(&counting, None, 10), [last, first]);
        assert!(
            counting.calls.get() < 1_000,
            "{} reads for 12,286 deleted greetings",
            counting.calls.get()
        );
    }

    #[test]
    fn gaps_and_foreign_entries_are_stepped_over() {
        let store = MemoryStore::default();
        append(&store, 2);
        block_on(take_position(&store)).unwrap(); // taken, never written: a crash
        let foreign = block_on(take_position(&store)).unwrap();
        store.set_raw(&entry_key(foreign), b"not an id");
        append(&store, 1);
        assert_eq!(live(&store, None, 10), [nth(5), nth(2), nth(1)]);
    }

    #[test]
    fn older_records_come_after_every_new_greeting_newest_of_them_first() {
        let store = MemoryStore::default();
        let new = append(&store, 2);
        let older: Vec<u64> = (0..3)
            .map(|i| {
                let position = block_on(take_older_position(&store)).unwrap();
                let (key, value) = entry(position, GreetingId::new(i, 0));
                block_on(store.set_many(&[(key, value)])).unwrap();
                position
            })
            .collect();
        let all = [new[1].0, new[0].0, older[0], older[1], older[2]];
        assert_eq!(live(&store, None, 10), all);
        assert_eq!(live(&store, Some(new[0].0), 10), all[2..]);
        assert_eq!(live(&store, Some(older[1]), 10), [older[2]]);
    }
}
