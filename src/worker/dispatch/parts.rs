//! Parts of transactions (`group_by => 'transaction'`): one request per part, its events in
//! statement order.
//!
//! An event of a part that cannot be sent (too large) is not left out silently: the part names
//! it in a note (`batch::dead_note`) and it rides along, dying when the part is delivered, so a
//! receiver applying transactions all or nothing can tell it from an event still to come (the
//! transaction's `events_total` counts it). A part of such events only still goes, and is
//! retried like any other until delivered.

use std::sync::Arc;
use std::time::Instant;

use pg_webhook_core::batch::{self, DeadEvent, Member, TransactionPart};
use pg_webhook_core::http::{Endpoint, Message};
use pg_webhook_core::payload::{message_id, Envelope};
use pg_webhook_core::retry::RetryPolicy;
use pg_webhook_core::Bytes;
use tokio::runtime::Runtime;

use super::{Dispatcher, Flight, Passenger, Unsent};
use crate::delivery::targets::Target;
use crate::queue::{Decision, QueuedEvent};

/// Where and how a part goes.
type How = (Arc<Endpoint>, Arc<RetryPolicy>);

/// What one event of a part becomes.
enum Entry {
    /// Sent: its member of the body.
    Sent(Member, How),
    /// Dies unsent, named in the part: the note, and the error it dies with.
    Dead(Bytes, String, How),
    /// Settled at once: retried later (its subscription's configuration failed), or dead
    /// without a part to name it in.
    Alone(String, Decision),
}

impl Entry {
    fn how(&self) -> Option<&How> {
        match self {
            Entry::Sent(_, how) | Entry::Dead(_, _, how) => Some(how),
            Entry::Alone(..) => None,
        }
    }
}

impl Dispatcher {
    /// What `event` becomes in its part.
    fn entry(&self, event: &QueuedEvent, target: &Target) -> Entry {
        match self.prepare(event, Some(target)) {
            Ok((body, endpoint, policy, _)) => Entry::Sent(
                Member {
                    id: message_id(&target.uid, event.id, event.timeline),
                    body,
                },
                (endpoint, policy),
            ),
            Err(Unsent {
                error,
                decision: Decision::Dead,
                code,
            }) => match &target.config {
                Ok(how) => Entry::Dead(self.note(event, target, code), error, how.clone()),
                Err(_) => Entry::Alone(error, Decision::Dead),
            },
            Err(Unsent {
                error, decision, ..
            }) => Entry::Alone(error, decision),
        }
    }

    /// The note a part names `event` with when it dies unsent, `code` saying why.
    fn note(&self, event: &QueuedEvent, target: &Target, code: &str) -> Bytes {
        let id = message_id(&target.uid, event.id, event.timeline);
        let dead = DeadEvent {
            webhook_id: &id,
            operation: &event.op,
            reason: code,
            schema: &event.table_schema,
            table: &event.table_name,
            envelope: Envelope {
                message_id: &id,
                time: &event.created_at,
                database: &self.database,
            },
        };
        batch::dead_note(target.format, &dead)
    }

    /// The bytes a part with `event` alone in it would take (`probe`: the part, with the
    /// largest counts), for cutting a transaction into parts. One settled alone (all of them,
    /// while the subscription's settings cannot be read) counts its row images: counted as
    /// nothing, a transaction of millions went into one part, held whole in the worker.
    pub fn part_entry_len(
        &self,
        event: &QueuedEvent,
        target: &Target,
        probe: &TransactionPart,
    ) -> usize {
        let format = target.format;
        match self.entry(event, target) {
            Entry::Sent(member, _) => {
                batch::part_len(format, std::slice::from_ref(&member), &[], Some(probe))
            }
            Entry::Dead(note, ..) => {
                batch::part_len(format, &[], std::slice::from_ref(&note), Some(probe))
            }
            Entry::Alone(..) => usize::try_from(event.payload_bytes).unwrap_or(0).max(1),
        }
    }

    /// Whether a part of this transaction is in flight or waiting to be recorded.
    pub fn part_in_flight(&self, subscription_id: i32, txid: i64) -> bool {
        self.parts.contains_key(&(subscription_id, txid))
    }

    /// Parts of `subscription_id`'s transactions in flight.
    pub fn parts_in_flight(&self, subscription_id: i32) -> usize {
        self.parts
            .keys()
            .filter(|(s, _)| *s == subscription_id)
            .count()
    }

    /// Starts one part of a transaction (all its events, in statement order) as one request;
    /// an event that cannot be sent rides as a note naming it (see the module). Returns false,
    /// and starts nothing, when the part was cut under a higher `pg_webhook.max_payload_bytes`
    /// and is over today's with more than one event: the transaction is to be cut again from
    /// this part on (`needs_recut`), not sent over the limit nor given up — unless it was cut
    /// again under today's limit already (`cut_under`, see worker/cutting.rs): then it dies.
    pub fn start_part(
        &mut self,
        rt: &Runtime,
        events: Vec<QueuedEvent>,
        target: &Target,
        tx: TransactionPart,
        cut_under: Option<usize>,
    ) -> bool {
        let Some(first) = events.first() else {
            return true;
        };
        let key = (first.subscription_id, first.txid);
        let mut entries: Vec<Entry> = events.iter().map(|e| self.entry(e, target)).collect();
        let mut body = part_body(target, &entries, &tx);
        let limit = self.max_payload_bytes;
        let named = entries.iter().filter(|e| e.how().is_some()).count();
        // (Once per limit: a part cut again under this one and still over it — which the cut's
        // estimate, never below the body, rules out — dies below rather than being cut forever.
        // The limit it was cut under, not the one it was found over: a cut again over several
        // claims began under a limit raised since, then lowered back, made a part of the old
        // size, which died.)
        if body.len() > limit && named > 1 && cut_under != Some(limit) {
            self.recut.insert(key);
            return false;
        }
        self.recut.remove(&key);
        if body.len() > limit {
            // Over today's limit all the same: every event of the part dies, named in a part
            // of notes only, or alone should even that be too large.
            let error = format!(
                "part {} of transaction {} is {} bytes, over pg_webhook.max_payload_bytes ({}): raise the limit and replay its events",
                tx.part,
                tx.id,
                body.len(),
                limit
            );
            for (event, entry) in events.iter().zip(entries.iter_mut()) {
                if let Entry::Sent(_, how) = entry {
                    let note = self.note(event, target, "too_large");
                    *entry = Entry::Dead(note, error.clone(), how.clone());
                }
            }
            body = part_body(target, &entries, &tx);
            if body.len() > limit {
                for entry in entries.iter_mut() {
                    if let Entry::Dead(_, why, _) = entry {
                        *entry = Entry::Alone(std::mem::take(why), Decision::Dead);
                    }
                }
            }
        }
        *self.parts.entry(key).or_default() += events.len();
        let how = entries.iter().find_map(|e| e.how().cloned());
        let mut riders = Vec::new();
        let mut dead = Vec::new();
        for (event, entry) in events.iter().zip(entries) {
            match entry {
                Entry::Sent(..) => {
                    self.take(event);
                    riders.push(Passenger::of(event))
                }
                Entry::Dead(_, error, _) => {
                    self.take_named(event);
                    dead.push((event.id, event.timeline));
                    riders.push(Passenger {
                        dies: Some(error),
                        ..Passenger::of(event)
                    })
                }
                Entry::Alone(error, decision) => {
                    self.take(event);
                    self.settle_unsent(event, error, decision, target.has_callback)
                }
            }
        }
        let Some((endpoint, policy)) = how.filter(|_| !riders.is_empty()) else {
            return true;
        };
        // Every event of a transaction has its txid, so the timeline it ran on.
        let timeline = events.first().map_or(1, |e| e.tx_timeline);
        let message = Message {
            id: batch::transaction_message_id(&target.uid, &tx.id, timeline, tx.part, &dead),
            body,
            content_type: batch::content_type(target.format),
        };
        let flight = Flight {
            subscription_id: key.0,
            events: riders,
            batch: None,
            policy,
            callback: target.has_callback,
            started: Instant::now(),
        };
        self.launch(rt, endpoint, message, flight);
        true
    }

    /// Whether a transaction's next part was found over today's payload limit (see
    /// `start_part`): its remaining events are to be cut again.
    pub fn needs_recut(&self, subscription_id: i32, txid: i64) -> bool {
        self.recut.contains(&(subscription_id, txid))
    }
}

/// The body of a part with `entries`: their members, then notes naming the dead ones.
fn part_body(target: &Target, entries: &[Entry], tx: &TransactionPart) -> Bytes {
    let members: Vec<Member> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Sent(member, _) => Some(member.clone()),
            _ => None,
        })
        .collect();
    let notes: Vec<Bytes> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Dead(note, ..) => Some(note.clone()),
            _ => None,
        })
        .collect();
    batch::part_body(target.format, &members, &notes, tx)
}
