//! `group_by => 'transaction'`: one request per committed transaction, all its events in
//! statement order, or several numbered parts sent one after the other when it is over
//! `pg_webhook.max_payload_bytes`.
//!
//! The first time the worker meets a transaction it cuts it into parts — renders every event's
//! body, in pages, and notes only where the cuts fall — and writes each event's part onto the
//! queue rows as it goes, and the transaction's size onto the last part's, so a retry or a
//! restarted worker sends exactly the same parts under the same webhook-ids. Then it sends the
//! lowest part still queued; the next goes when that one is delivered or dead. A part found over a payload limit lowered since
//! the cut (see `Dispatcher::start_part`) is not given up: what is left of the transaction is
//! cut again from that part's number on.

use pg_webhook_core::batch::TransactionPart;
use pgrx::spi::SpiResult;

use super::dispatch::Dispatcher;
use crate::delivery::targets::Target;
use crate::queue::{Part, Statements};

/// Events read per page while cutting a transaction.
const CUT_PAGE: i64 = 1000;

/// A part ready to start: its subscription, events and place in its transaction.
pub(super) struct ReadyPart {
    pub subscription_id: i32,
    pub part: Part,
    pub tx: TransactionPart,
}

/// Finds, for a grouped subscription, the transactions whose next part may go now (none of
/// theirs in flight, due), cutting the ones not cut yet; at most `room` parts in all.
pub(super) fn ready_parts(
    statements: &Statements,
    dispatcher: &Dispatcher,
    subscription_id: i32,
    target: &Target,
    room: usize,
    largest: i64,
) -> SpiResult<Vec<ReadyPart>> {
    let limit = target
        .limits
        .max_in_flight
        .unwrap_or(usize::MAX)
        .saturating_sub(dispatcher.parts_in_flight(subscription_id))
        .min(room);
    let mut ready = Vec::new();
    if limit == 0 {
        return Ok(ready);
    }
    // Those in flight come back too (and are skipped): look past them.
    let look = limit * 2 + 8 + dispatcher.parts_in_flight(subscription_id);
    let heads = statements.transaction_heads(subscription_id, look as i64)?;
    for (txid, lowest, uncut) in heads {
        if ready.len() == limit {
            break;
        }
        if dispatcher.part_in_flight(subscription_id, txid) {
            continue;
        }
        let part_no = match (uncut, lowest) {
            (false, Some(p)) if !dispatcher.needs_recut(subscription_id, txid) => p,
            // Its next part is over a limit lowered since the cut: what is left (parts p on;
            // those before are finished) is cut again, numbered on from p.
            (false, Some(p)) => {
                cut(
                    statements,
                    dispatcher,
                    (subscription_id, target),
                    txid,
                    p,
                    largest,
                )?;
                p
            }
            _ => {
                cut(
                    statements,
                    dispatcher,
                    (subscription_id, target),
                    txid,
                    1,
                    largest,
                )?;
                1
            }
        };
        let part = statements.transaction_part(txid, subscription_id, part_no, largest)?;
        if part.events.is_empty() {
            continue; // waiting for a retry, or parked
        }
        let tx = TransactionPart {
            id: txid.to_string(),
            part: part_no.max(1) as u32,
            parts: part.parts.max(1) as u32,
            events_total: part.events_total.max(0) as u64,
        };
        ready.push(ReadyPart {
            subscription_id,
            part,
            tx,
        });
    }
    Ok(ready)
}

/// Cuts a transaction's queued events into parts that each stay within the payload limit,
/// numbered from `first`, and writes them as it goes: a transaction of millions of events held
/// every id in memory, and one array of over 134 million of them would pass PostgreSQL's 1 GB
/// limit and fail every claim. The events of finished parts are written a page at a time;
/// those of the part being cut wait for it, so that the last part's events, written last, are
/// the ones told the transaction's size: it is read as the largest count the queued events
/// carry (transaction_size.sql), and the last part stays queued until every other is finished.
fn cut(
    statements: &Statements,
    dispatcher: &Dispatcher,
    (subscription_id, target): (i32, &Target),
    txid: i64,
    first: i32,
    largest: i64,
) -> SpiResult<()> {
    // The transaction object's size: its id, and room for the counts.
    let probe = TransactionPart {
        id: txid.to_string(),
        part: u32::MAX,
        parts: u32::MAX,
        events_total: u64::MAX,
    };
    let limit = dispatcher.max_payload_bytes;
    let (mut part, mut used, mut in_part) = (first, 0usize, 0usize);
    let mut total = 0i32;
    let mut after = 0i64;
    let mut series_of_part = None;
    // Events cut and not written yet, in id order, with their parts.
    let (mut ids, mut parts): (Vec<i64>, Vec<i32>) = (Vec::new(), Vec::new());
    loop {
        let page =
            statements.transaction_events(txid, subscription_id, after, CUT_PAGE, largest)?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id;
        for event in &page {
            // An event that cannot be sent goes in the part it falls in, which names it (see
            // dispatch/parts.rs).
            let size = dispatcher.part_entry_len(event, target, &probe);
            // Cut again, the part that was tried already does not take in events never sent:
            // a part's events share their attempts, so it is retried (and dies) whole.
            let series = event.attempts - event.series_start;
            let tried_apart = series_of_part.is_some_and(|s| s != series);
            series_of_part = Some(series);
            if in_part > 0 && (used + size > limit || tried_apart) {
                part += 1;
                used = 0;
                in_part = 0;
            }
            used += size;
            in_part += 1;
            ids.push(event.id);
            parts.push(part);
        }
        total = total.saturating_add(page.len() as i32);
        // The finished parts' events (a part holds at most the payload limit's worth).
        let finished = parts.partition_point(|p| *p < part);
        if finished >= CUT_PAGE as usize {
            let rest = (ids.split_off(finished), parts.split_off(finished));
            statements.set_parts(txid, subscription_id, ids, parts, None)?;
            (ids, parts) = rest;
        }
    }
    if !ids.is_empty() {
        statements.set_parts(txid, subscription_id, ids, parts, Some(total))?;
    }
    Ok(())
}
