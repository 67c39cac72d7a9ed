//! Moving events a nested statement queued after those of the statement it is nested in (see
//! `capture::nested`): new ids from the writer's own, in the same order.

use pgrx::pg_sys;

use super::QueueWriter;
use crate::sql::{arg, query_cstr, run_at_latest_snapshot};
use crate::unguarded;

impl QueueWriter {
    /// Gives this transaction's events of the writer's subscription with ids in `ranges` (each
    /// first to last) new ids, taken after every id this writer handed out so far, in the same
    /// order; their new first and last id (`None`: there are none, their statements were
    /// rolled back).
    ///
    /// Runs SQL as the extension owner (the writer has no rights on the queue), at the latest
    /// snapshot with the command counter advanced, so it sees the nested statements' rows.
    pub fn move_after_own(&mut self, ranges: &[(i64, i64)]) -> Result<Option<(i64, i64)>, String> {
        let txid = (pg_sys::XID8OID, Some(self.constants.txid));
        let subscription = (pg_sys::INT4OID, Some(self.constants.subscription_id));
        let ranges = disjoint(ranges);
        let (Some(&(from, _)), Some(&(_, to))) = (ranges.first(), ranges.last()) else {
            return Ok(None);
        };
        let owner = crate::privilege::extension_owner();
        crate::privilege::as_owner_sandboxed(owner, || {
            pgrx::spi::Spi::connect(|_| {
                let mut old: Vec<i64> = Vec::new();
                run_at_latest_snapshot(
                    query_cstr!("nested_events.sql"),
                    &[txid, subscription, arg(from), arg(to)],
                    |row| old.extend(row.get::<i64>(1).filter(|&id| within(&ranges, id))),
                )?;
                let mut new = Vec::with_capacity(old.len());
                for _ in &old {
                    // SAFETY: taking an id owns nothing and does not panic.
                    let id = unsafe { unguarded::region(|r| self.ids.take(r)) };
                    new.push(id.unwrap_or_else(|exhausted| exhausted.raise()));
                }
                let Some(span) = new.first().copied().zip(new.last().copied()) else {
                    return Ok(None);
                };
                let count = old.len();
                let moved = run_at_latest_snapshot(
                    query_cstr!("move_events.sql"),
                    &[txid, arg(old), arg(new)],
                    |_| {},
                )?;
                if moved as usize != count {
                    return Err(format!(
                        "moving the {count} events statements nested in this one queued \
                         before it, to after its own, gave {moved} of them new ids"
                    ));
                }
                Ok(Some(span))
            })
        })
    }
}

/// `ranges` (first to last, any order, maybe overlapping) as disjoint ranges in id order.
fn disjoint(ranges: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(sorted.len());
    for (first, last) in sorted {
        match merged.last_mut() {
            Some(previous) if first <= previous.1.saturating_add(1) => {
                previous.1 = previous.1.max(last);
            }
            _ => merged.push((first, last)),
        }
    }
    merged
}

/// `id` is in one of `ranges` (disjoint, in order).
fn within(ranges: &[(i64, i64)], id: i64) -> bool {
    let after = ranges.partition_point(|r| r.0 <= id);
    after > 0 && id <= ranges[after - 1].1
}

#[cfg(test)]
mod tests {
    use super::{disjoint, within};

    #[test]
    fn ranges_merge_and_hold_exactly_their_ids() {
        let ranges = disjoint(&[(10, 12), (1, 3), (2, 5), (7, 7), (6, 6), (20, 25), (21, 22)]);
        assert_eq!(ranges, [(1, 7), (10, 12), (20, 25)]);
        let held: Vec<i64> = (0..30).filter(|&id| within(&ranges, id)).collect();
        let expected: Vec<i64> = (1..=7).chain(10..=12).chain(20..=25).collect();
        assert_eq!(held, expected);
        assert!(!within(&[], 1));
    }
}
