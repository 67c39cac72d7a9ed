//! Cutting a grouped subscription's transaction into parts (see grouped.rs), a step per claim:
//! a transaction of a million events took its worker 15-20 s to cut in one go, during which
//! every other subscription of that worker waited for the claim. A claim now cuts at most
//! `CUT_STEP` events and the next claim goes on where it stopped, from what the worker
//! remembers of the cut: the parts finished so far are written, and where the part being cut
//! begins is held in memory. Nothing of a transaction is sent before its cut is done (the last
//! part's events, written last, carry its size: see transaction_size.sql), so the parts and
//! their webhook-ids are those of a cut made in one go. So is a cut again from a part over a
//! payload limit lowered since: its transaction's last event has its size made negative
//! meanwhile (reopen_cut.sql), and so does not look cut.
//!
//! What a step wrote is part of its claim's transaction: the worker takes a step's progress as
//! made only once that transaction commits (`commit`), and forgets it otherwise (`discard`),
//! so what it remembers is always what the queue says. A worker that stops in the middle of a
//! cut, or forgets it (its subscription given to another worker, or the cut not gone on with
//! for ten minutes), leaves some events with parts and no size (or a negative one) on the last:
//! the next cut of that transaction starts again from its lowest part still queued (its first,
//! but for a cut again).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pg_webhook_core::batch::TransactionPart;
use pgrx::spi::SpiResult;

use super::dispatch::Dispatcher;
use crate::delivery::targets::Target;
use crate::queue::{QueuedEvent, Statements};

/// Events read per page while cutting a transaction.
const CUT_PAGE: i64 = 1000;
/// Bytes of row images read per page at most (the first event's always): 1,000 events of
/// 4 MiB each made one page gigabytes of text.
const CUT_PAGE_BYTES: i64 = 32 << 20;
/// A part reads the images of its events again when it is sent, those of the ones that die
/// in it too (named by a note of a few hundred bytes: thousands fit a part): a part stops
/// taking events once they hold this many times the payload limit (those sent hold at most
/// about four times their text, a jsonb's entries and numbers taking more than their text).
const PART_READ_FACTOR: usize = 8;
/// Events a claim cuts at most, all transactions together, the images read counting as events
/// of 32 kB (~0.1 s here for small ones, at most 160 MiB of images): the subscriptions
/// take turns, and each one's oldest transaction goes first, so a later one waits for the cut
/// of an earlier large one.
pub(super) const CUT_STEP: usize = 5 * CUT_PAGE as usize;
/// Finished parts written in one statement at most (see set_parts.sql).
const RUNS_PER_WRITE: usize = 16;
/// A cut whose rows another transaction held is not gone on with for this long: each try
/// reads and locks the rows to write.
const HELD_RETRY: Duration = Duration::from_secs(1);
/// A cut not gone on with for this long is forgotten (its transaction's events were taken away
/// some other way); should it come back, it starts again.
const FORGOTTEN_AFTER: Duration = Duration::from_secs(600);

/// How far a claim's step of a cut went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stepped {
    /// The transaction is cut.
    Done,
    /// The allowance ran out: the next claim goes on.
    More,
    /// Another transaction holds some of the rows to write: a later claim goes on.
    Held,
}

/// The cuts going on, as of the last committed claim, and the steps of the claim running now.
#[derive(Default)]
pub(super) struct Cuts {
    /// The subscription that used up the last claim's allowance, or else the last one a claim
    /// gave a part: the next starts after it.
    pub(super) turn: i32,
    going: HashMap<(i32, i64), Cut>,
    /// The payload limit each transaction was last cut again under, until its next part goes
    /// (see `Dispatcher::start_part`).
    under: HashMap<(i32, i64), usize>,
    staged: HashMap<(i32, i64), Staged>,
    /// Cuts whose rows another transaction held, and when to try them again.
    held: HashMap<(i32, i64), Instant>,
}

/// What a claim's step left of a cut: going on, or done (cut again under that limit, if it
/// was a cut again).
enum Staged {
    Going(Cut),
    Done(Option<usize>),
}

/// Where a cut stopped: the part being cut (the run of ids it has so far, not written yet),
/// the runs of the parts finished and not written yet, and the counts the next event's place
/// depends on.
#[derive(Clone)]
struct Cut {
    /// The part it cuts from (above 1: a cut again).
    first: i32,
    /// The transaction's size, where a cut again keeps the first cut's.
    size: Option<i32>,
    /// The payload limit when it began, which all its steps cut under (a part cut under two
    /// could be over the one a cut again is checked against: see `Dispatcher::start_part`).
    limit: usize,
    part: i32,
    /// The first and last id of the part being cut (`None` before its first event).
    open: Option<(i64, i64)>,
    used: usize,
    /// The bytes of row images the part's events hold (see `PART_READ_FACTOR`).
    read: usize,
    /// The attempt series of the part's events (see `take`).
    series: Option<i32>,
    /// Finished parts: (first id, last id, part).
    finished: Vec<(i64, i64, i32)>,
    total: i32,
    /// The last event read (its id).
    after: i64,
    touched: Instant,
}

impl Cut {
    fn starting(first: i32, size: Option<i32>, limit: usize) -> Cut {
        Cut {
            first,
            size,
            limit,
            part: first,
            open: None,
            used: 0,
            read: 0,
            series: None,
            finished: Vec::new(),
            total: 0,
            after: 0,
            touched: Instant::now(),
        }
    }

    /// Places the next event, of `size` bytes in a part, `read` bytes of row images read when
    /// its part is sent, and attempt series `series`.
    fn take(&mut self, id: i64, (size, read): (usize, usize), series: i32, limit: usize) {
        // Cut again, the part that was tried already does not take in events never sent: a
        // part's events share their attempts, so it is retried (and dies) whole.
        let tried_apart = self.series.is_some_and(|s| s != series);
        self.series = Some(series);
        if let Some((first, last)) = self.open {
            let reads_too_much = self.read + read > limit.saturating_mul(PART_READ_FACTOR);
            if self.used + size > limit || tried_apart || reads_too_much {
                self.finished.push((first, last, self.part));
                self.part += 1;
                self.used = 0;
                self.read = 0;
                self.open = None;
            }
        }
        self.used += size;
        self.read += read;
        self.open = Some((self.open.map_or(id, |o| o.0), id));
        self.total = self.total.saturating_add(1);
    }
}

/// The bytes of `event`'s row images a worker reads (none past `largest`: see
/// transaction_events.sql).
pub(super) fn images_read(event: &QueuedEvent, largest: i64) -> usize {
    match event.payload_bytes <= largest {
        true => usize::try_from(event.payload_bytes).unwrap_or(0),
        false => 0,
    }
}

impl Cuts {
    /// The part a cut of the transaction going on cuts from.
    pub(super) fn going(&self, subscription_id: i32, txid: i64) -> Option<i32> {
        self.going.get(&(subscription_id, txid)).map(|c| c.first)
    }

    /// Cuts a transaction's queued events into parts that each stay within the payload limit,
    /// numbered from `first` (or goes on with the cut going on from there; `size`, the
    /// transaction's, for a cut again: see reopen_cut.sql), reading at most `budget`
    /// events more (taken off it; a page at least). Finished parts are written a few at a
    /// time, and all of them when the step ends; the part being cut waits for its end, so that
    /// the last part's events, written last, are the ones told the transaction's size. Parts
    /// whose rows another transaction holds are not written (see set_parts.sql): they stay
    /// with the cut, written by a later step.
    pub(super) fn step(
        &mut self,
        statements: &Statements,
        dispatcher: &Dispatcher,
        (subscription_id, target): (i32, &Target),
        (txid, first, size): (i64, i32, Option<i32>),
        largest: i64,
        budget: &mut usize,
    ) -> SpiResult<Stepped> {
        let key = (subscription_id, txid);
        // (Half the wait early counts: the claim that comes a second on, as it was told, began
        // before the step that was held set the time.)
        if (self.held.get(&key)).is_some_and(|at| Instant::now() + HELD_RETRY / 2 < *at) {
            return Ok(Stepped::Held);
        }
        let mut cut = match self.going.get(&key) {
            Some(cut) if cut.first == first => cut.clone(),
            _ => Cut::starting(first, size, dispatcher.max_payload_bytes),
        };
        cut.touched = Instant::now();
        // The transaction object's size: its id, and room for the counts.
        let probe = TransactionPart {
            id: txid.to_string(),
            part: u32::MAX,
            parts: u32::MAX,
            events_total: u64::MAX,
        };
        let limit = cut.limit;
        // (Whether they were written.)
        let write = |runs: &mut Vec<(i64, i64, i32)>, total: Option<i32>| {
            if runs.is_empty() {
                return Ok(true);
            }
            let written = statements.set_parts(txid, subscription_id, runs, total)?;
            if written {
                runs.clear();
            }
            Ok::<bool, pgrx::spi::Error>(written)
        };
        // Parts a held write left go first: the cut reads no further until they are written
        // (or it would read the whole transaction, and write it in one go once let go).
        if !write(&mut cut.finished, None)? {
            return Ok(self.held(key, cut));
        }
        loop {
            if *budget == 0 {
                if !write(&mut cut.finished, None)? {
                    return Ok(self.held(key, cut));
                }
                self.held.remove(&key);
                self.staged.insert(key, Staged::Going(cut));
                return Ok(Stepped::More);
            }
            let page = statements.transaction_events(
                txid,
                subscription_id,
                cut.after,
                (CUT_PAGE, CUT_PAGE_BYTES),
                largest,
            )?;
            // Counted in events, and in bytes of images read as events of 32 kB: a step of
            // 5,000 events of 4 MiB each read 20 GB.
            let read: usize = page.iter().map(|e| images_read(e, largest)).sum();
            let as_events = read / (CUT_PAGE_BYTES / CUT_PAGE) as usize;
            *budget = budget.saturating_sub(page.len().max(as_events).max(1));
            let Some(last) = page.last() else {
                break;
            };
            cut.after = last.id;
            for event in &page {
                // An event that cannot be sent goes in the part it falls in, which names it
                // (see dispatch/parts.rs).
                let size = dispatcher.part_entry_len(event, target, &probe);
                let read = images_read(event, largest);
                let series = event.attempts - event.series_start;
                cut.take(event.id, (size, read), series, limit);
            }
            if cut.finished.len() >= RUNS_PER_WRITE && !write(&mut cut.finished, None)? {
                return Ok(self.held(key, cut));
            }
        }
        // The finished parts, then the last, whose events are told the transaction's size
        // (held, the part stays open: the next step reads no more and writes it).
        let mut last: Vec<_> = cut
            .open
            .map(|(f, l)| (f, l, cut.part))
            .into_iter()
            .collect();
        if !write(&mut cut.finished, None)?
            || !write(&mut last, Some(cut.size.unwrap_or(cut.total)))?
        {
            return Ok(self.held(key, cut));
        }
        self.held.remove(&key);
        let again = cut.size.is_some().then_some(cut.limit);
        self.staged.insert(key, Staged::Done(again));
        Ok(Stepped::Done)
    }

    /// A step whose write another transaction held: its cut goes on from here, tried again
    /// only `HELD_RETRY` on.
    fn held(&mut self, key: (i32, i64), cut: Cut) -> Stepped {
        self.held.insert(key, Instant::now() + HELD_RETRY);
        self.staged.insert(key, Staged::Going(cut));
        Stepped::Held
    }

    /// The claim whose steps were staged committed: its progress is the queue's.
    pub(super) fn commit(&mut self) {
        for (key, staged) in self.staged.drain() {
            match staged {
                Staged::Going(cut) => {
                    self.going.insert(key, cut);
                }
                Staged::Done(again) => {
                    self.going.remove(&key);
                    if let Some(limit) = again {
                        self.under.insert(key, limit);
                    }
                }
            }
        }
        self.going
            .retain(|_, cut| cut.touched.elapsed() < FORGOTTEN_AFTER);
        // (A held cut's transaction taken away meanwhile is never stepped again.)
        let going = &self.going;
        self.held.retain(|key, _| going.contains_key(key));
    }

    /// The claim whose steps were staged did not commit: nothing it wrote is there.
    pub(super) fn discard(&mut self) {
        self.staged.clear();
    }

    /// Forgets the cuts of subscriptions `keep` says no (no longer this worker's).
    pub(super) fn keep_only(&mut self, keep: impl Fn(i32) -> bool) {
        self.going.retain(|(id, _), _| keep(*id));
        self.held.retain(|(id, _), _| keep(*id));
        self.under.retain(|(id, _), _| keep(*id));
    }

    /// The payload limit the transaction was last cut again under, if this worker did so since
    /// its last part went.
    pub(super) fn cut_again_under(&self, subscription_id: i32, txid: i64) -> Option<usize> {
        self.under.get(&(subscription_id, txid)).copied()
    }

    /// A part of the transaction went: the next, if over the limit, is cut again.
    pub(super) fn part_went(&mut self, subscription_id: i32, txid: i64) {
        self.under.remove(&(subscription_id, txid));
    }

    /// Forgets every cut (the extension was made again).
    pub(super) fn clear(&mut self) {
        self.going.clear();
        self.under.clear();
        self.staged.clear();
        self.held.clear();
    }
}
