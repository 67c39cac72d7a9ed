//! Batches: many events of one subscription in one request.
//!
//! A batch is retried as a whole: every event in it gets the same outcome, the events retried
//! remember the batch (the queue's `batch` column) and come due together (one jitter), and go
//! out in the same batch again, under the same `webhook-id`. New events are cut into batches of
//! at most `batch_size` events and `pg_webhook.max_payload_bytes` bytes, and each such batch is
//! written down before it goes (`Boarding::out`), so that a worker that dies with it out leaves
//! it to the next to send again as itself.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use pg_webhook_core::batch::{self, Member};
use pg_webhook_core::http::{Endpoint, Message};
use pg_webhook_core::payload::message_id;
use tokio::runtime::Runtime;

use super::{Dispatcher, Flight, Passenger};
use crate::delivery::targets::Target;
use crate::queue::{BatchOut, Decision, QueuedEvent};

/// A batched subscription's events of one claim, cut into batches ready to go (`board`).
pub struct Gathered {
    /// All of them, taken by this worker as they go.
    events: Vec<QueuedEvent>,
    /// Those that cannot be sent (ids, all in `events`), settled alone: why, and what becomes
    /// of them.
    unsent: Vec<(i64, String, Decision)>,
    /// Events the claim chose that the payload limit cut into more requests than it counted:
    /// not taken, left in the queue for a later claim.
    left: Vec<QueuedEvent>,
    callback: bool,
    ready: Vec<Boarding>,
}

struct Boarding {
    endpoint: Arc<Endpoint>,
    message: Message,
    flight: Flight,
    /// Sent for the first time (its events carry no batch yet): written down before it goes
    /// (see `Gathered::out`).
    new: bool,
}

impl Gathered {
    /// What to write down before they go, so that each batch of new events goes out again as
    /// itself if this worker dies first (queue::BatchOut). A retried batch's events carry it.
    pub fn out(&self) -> impl Iterator<Item = BatchOut> + '_ {
        self.ready.iter().filter(|b| b.new).filter_map(|b| {
            Some(BatchOut {
                subscription_id: b.flight.subscription_id,
                batch: b.flight.batch?,
                events: (b.flight.events.iter())
                    .map(|e| (e.txid, e.event_id))
                    .collect(),
            })
        })
    }

    /// Every event taken, sent or not.
    pub fn events(&self) -> impl Iterator<Item = &QueuedEvent> {
        self.events.iter()
    }

    /// The requests they go in.
    pub fn requests(&self) -> usize {
        self.ready.len()
    }

    /// The events left for a later claim (see `left`).
    pub fn left(&self) -> &[QueuedEvent] {
        &self.left
    }
}

/// Events of one batch as they are gathered: the batch they were sent in before (`None`: new),
/// and each event with its member of the body.
struct Gathering {
    batch: Option<i64>,
    events: Vec<Passenger>,
    members: Vec<Member>,
}

impl Dispatcher {
    /// Cuts `events`, all of batched subscription `target`, into as few requests as its batch
    /// size and the payload limit allow, at most `requests` of them (what the claim counted
    /// for them: the payload limit may cut a batch into more, and `max_in_flight` counts each;
    /// the events of the requests over are left), ready to go (`board`); an event that cannot
    /// be sent is to be settled alone. Changes nothing: a claim transaction does it, to write
    /// the batches down before it commits, and a claim that fails starts nothing.
    pub fn gather_batched(
        &self,
        events: Vec<QueuedEvent>,
        target: &Target,
        requests: usize,
    ) -> Gathered {
        let mut gathered = Gathered {
            events: Vec::new(),
            unsent: Vec::new(),
            left: Vec::new(),
            callback: target.has_callback,
            ready: Vec::new(),
        };
        let Some(subscription_id) = events.first().map(|e| e.subscription_id) else {
            return gathered;
        };
        let mut groups: Vec<Gathering> = Vec::new();
        let mut how = None;
        for event in &events {
            let (body, endpoint, policy, _) = match self.prepare(event, Some(target)) {
                Ok(ready) => ready,
                Err(unsent) => {
                    gathered
                        .unsent
                        .push((event.id, unsent.error, unsent.decision));
                    continue;
                }
            };
            let member = Member {
                id: message_id(&target.uid, event.id, event.timeline),
                body,
            };
            let alone = batch::body_len(target.format, std::slice::from_ref(&member));
            if alone > self.max_payload_bytes {
                let error = format!(
                    "payload is {alone} bytes in a batch, over pg_webhook.max_payload_bytes ({}): raise the limit and replay the event",
                    self.max_payload_bytes
                );
                gathered.unsent.push((event.id, error, Decision::Dead));
                continue;
            }
            how.get_or_insert((endpoint, policy));
            let i = match groups.iter().position(|g| g.batch == event.batch) {
                Some(i) => i,
                None => {
                    groups.push(Gathering {
                        batch: event.batch,
                        events: Vec::new(),
                        members: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            groups[i].events.push(Passenger::of(event));
            groups[i].members.push(member);
        }
        let Some((endpoint, policy)) = how else {
            gathered.events = events;
            return gathered;
        };
        let mut left: HashSet<i64> = HashSet::new();
        for group in groups {
            let cuts = batch::cut(
                target.format,
                &group.members,
                target.batch_size,
                self.max_payload_bytes,
                None,
            );
            let mut passengers = group.events.into_iter();
            for range in cuts {
                let members = &group.members[range.clone()];
                let events: Vec<Passenger> = passengers.by_ref().take(range.len()).collect();
                if gathered.ready.len() == requests {
                    left.extend(events.iter().map(|e| e.event_id));
                    continue;
                }
                let ids: Vec<(i64, i32)> =
                    events.iter().map(|e| (e.event_id, e.timeline)).collect();
                let first = group
                    .batch
                    .or_else(|| ids.first().map(|(id, _)| *id))
                    .unwrap_or_default();
                let message = Message {
                    id: batch::batch_id(&target.uid, first, &ids),
                    body: batch::body(target.format, members),
                    content_type: batch::content_type(target.format),
                };
                let flight = Flight {
                    subscription_id,
                    events,
                    batch: Some(first),
                    policy: policy.clone(),
                    callback: target.has_callback,
                    started: Instant::now(),
                };
                gathered.ready.push(Boarding {
                    endpoint: endpoint.clone(),
                    message,
                    flight,
                    new: group.batch.is_none(),
                });
            }
        }
        (gathered.events, gathered.left) = events.into_iter().partition(|e| !left.contains(&e.id));
        gathered
    }

    /// Takes the events `gather_batched` gathered, settles those that cannot be sent and sends
    /// the batches.
    pub fn board(&mut self, rt: &Runtime, gathered: Gathered) {
        for event in &gathered.events {
            self.take(event);
        }
        for (id, error, decision) in gathered.unsent {
            if let Some(event) = gathered.events.iter().find(|e| e.id == id) {
                self.settle_unsent(event, error, decision, gathered.callback);
            }
        }
        for mut boarding in gathered.ready {
            boarding.flight.started = Instant::now();
            self.launch(rt, boarding.endpoint, boarding.message, boarding.flight);
        }
    }
}
