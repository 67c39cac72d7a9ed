//! `group_by => 'transaction'`: one request per committed transaction, all its events in
//! statement order, or several numbered parts sent one after the other when it is over
//! `pg_webhook.max_payload_bytes`.
//!
//! The first time the worker meets a transaction it cuts it into parts — renders every event's
//! body, in pages, and notes only where the cuts fall — and writes each event's part onto the
//! queue rows as it goes, and the transaction's size onto the last part's, so a retry or a
//! restarted worker sends exactly the same parts under the same webhook-ids; a large one over
//! several claims (see cutting.rs). Then it sends the lowest part still queued; the next goes
//! when that one is delivered or dead. A part found over a payload limit lowered since the cut
//! (see `Dispatcher::start_part`) is not given up: what is left of the transaction is cut again
//! from that part's number on, over several claims too.

use pg_webhook_core::batch::TransactionPart;
use pgrx::spi::SpiResult;

use super::cutting::{Cuts, Stepped};
use super::dispatch::Dispatcher;
use crate::delivery::targets::Target;
use crate::queue::{Held, Part, Statements, TransactionHead};

/// A part ready to start: its subscription, events and place in its transaction.
pub(super) struct ReadyPart {
    pub subscription_id: i32,
    pub txid: i64,
    pub part: Part,
    pub tx: TransactionPart,
}

/// How many parts of a grouped subscription may start, at most `room`: its own `max_in_flight`
/// less its parts in flight.
fn part_limit(
    dispatcher: &Dispatcher,
    (subscription_id, target): (i32, &Target),
    room: usize,
) -> usize {
    target
        .limits
        .max_in_flight
        .unwrap_or(usize::MAX)
        .saturating_sub(dispatcher.parts_in_flight(subscription_id))
        .min(room)
}

/// How many parts of a grouped subscription may go (at most `room`), and how many of its queued
/// transactions to read to find them: those in flight come back too (and are skipped), look
/// past them.
pub(super) fn heads_to_read(
    dispatcher: &Dispatcher,
    at: (i32, &Target),
    room: usize,
) -> (usize, i64) {
    let limit = part_limit(dispatcher, at, room);
    let look = limit * 2 + 8 + dispatcher.parts_in_flight(at.0);
    (limit, look as i64)
}

/// Whether the claim may write the subscription's queued events (cut its transactions): no
/// other transaction holds its row (see sql/worker/subscriptions_free.sql). Asked once per
/// claim (`free`).
fn may_cut(
    statements: &Statements,
    subscription_id: i32,
    free: &mut Option<bool>,
) -> SpiResult<bool> {
    if free.is_none() {
        let found = statements.subscriptions_free(&[subscription_id])?;
        *free = Some(found.contains(&subscription_id));
    }
    Ok(*free == Some(true))
}

/// What `ready_parts` found: the parts ready, whether a cut is left to go on with, and whether
/// one waits for another transaction to let go of the subscription's row (`may_cut`) or of
/// some of its events.
pub(super) struct Ready {
    pub parts: Vec<ReadyPart>,
    pub cutting: bool,
    pub busy: bool,
}

/// What `ready_parts` found out on the way: whether the subscription's row is free (asked
/// once, see `may_cut`), a cut is left to go on with, one waits for another transaction.
#[derive(Default)]
struct Found {
    free: Option<bool>,
    cutting: bool,
    busy: bool,
}

/// Finds, among a grouped subscription's queued transactions `heads` (read as
/// `heads_to_read` says), those whose next part may go now (none of theirs in flight, due),
/// cutting the ones not cut yet within `budget` events (see cutting.rs); at most `room` parts
/// in all, and no more than `bytes` of row images, but for the first, which may take `first`
/// (see `Plan::bytes_allowed`).
pub(super) fn ready_parts(
    statements: &Statements,
    (dispatcher, cuts): (&Dispatcher, &mut Cuts),
    (subscription_id, target): (i32, &Target),
    (room, bytes, first): (usize, i64, i64),
    (heads, largest): (Vec<TransactionHead>, i64),
    budget: &mut usize,
) -> SpiResult<Ready> {
    let limit = part_limit(dispatcher, (subscription_id, target), room);
    let mut ready = Vec::new();
    let mut f = Found::default();
    let at = (subscription_id, target);
    let mut held = 0;
    for (txid, lowest, uncut) in heads {
        if ready.len() == limit || (held >= bytes && !ready.is_empty()) {
            break;
        }
        if dispatcher.part_in_flight(subscription_id, txid) {
            continue;
        }
        // A step of the cut from part `first`, not begun without allowance left or while
        // another transaction holds the subscription's row; `size`, the transaction's for a cut
        // again, or (`reopen`) read off its last event, marked as being cut again
        // (reopen_cut.sql). True once the transaction is cut.
        let step =
            |cuts: &mut Cuts, f: &mut Found, from: (i32, Option<i32>, bool), budget: &mut usize| {
                let (first, size, reopen) = from;
                let stepped = if *budget == 0 {
                    Stepped::More
                } else if !may_cut(statements, subscription_id, &mut f.free)? {
                    Stepped::Held
                } else {
                    let size = match reopen {
                        true => statements.reopen_cut(txid, subscription_id)?,
                        false => Ok(size),
                    };
                    match size {
                        Ok(size) => {
                            let cut = (txid, first, size);
                            cuts.step(statements, dispatcher, at, cut, largest, budget)?
                        }
                        Err(Held) => Stepped::Held,
                    }
                };
                f.cutting |= stepped == Stepped::More;
                f.busy |= stepped == Stepped::Held;
                Ok::<bool, pgrx::spi::Error>(stepped == Stepped::Done)
            };
        let going = cuts.going(subscription_id, txid);
        let part_no = match (uncut, lowest) {
            _ if going.is_some() || uncut || lowest.is_none() => {
                let first = going.unwrap_or(1);
                if !step(cuts, &mut f, (first, None, false), budget)? {
                    continue;
                }
                first
            }
            // (Cut again under today's limit already, and not gone yet: paused meanwhile.)
            (_, Some(p))
                if !dispatcher.needs_recut(subscription_id, txid)
                    || cuts.cut_again_under(subscription_id, txid)
                        == Some(dispatcher.max_payload_bytes) =>
            {
                p
            }
            // Its next part is over a limit lowered since the cut: what is left (parts p on;
            // those before are finished) is cut again, numbered on from p, keeping the size.
            (_, Some(p)) => {
                if !step(cuts, &mut f, (p, None, true), budget)? {
                    continue;
                }
                p
            }
            (_, None) => continue,
        };
        let mut part = statements.transaction_part(txid, subscription_id, part_no, largest)?;
        if !part.cut() {
            // No size (or a negative one) on its last event: a cut that stopped half-way (its
            // worker stopped, or forgot it). Cut again from the lowest part still queued (the
            // first, but for a cut again, which keeps the size).
            let size = (part.events_total < 0).then_some(-part.events_total);
            if !step(cuts, &mut f, (part_no, size, false), budget)? {
                continue;
            }
            part = statements.transaction_part(txid, subscription_id, part_no, largest)?;
        }
        if part.events.is_empty() {
            continue; // waiting for a retry, or parked
        }
        let tx = TransactionPart {
            id: txid.to_string(),
            part: part_no.max(1) as u32,
            parts: part.parts.max(1) as u32,
            events_total: part.events_total.max(0) as u64,
        };
        let part_bytes = dispatcher.part_bytes(&part.events);
        if held + part_bytes > bytes && !(ready.is_empty() && part_bytes <= first) {
            break;
        }
        held += part_bytes;
        ready.push(ReadyPart {
            subscription_id,
            txid,
            part,
            tx,
        });
    }
    Ok(Ready {
        parts: ready,
        cutting: f.cutting,
        busy: f.busy,
    })
}
