//! The events a test's receiver accepted, and what a test expects of them.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::cluster::wait_until;
use super::receiver::Receiver;
use super::WAIT;

/// (type, table, new image, old image) of one accepted event.
pub type Event = (String, String, Value, Value);

/// Ordered, so that the marker row a test writes last arrives after every event before it.
pub const ORDERED: &str = ", ordered => true";

/// Each accepted event as (type, table, new image, old image), in arrival order, once the
/// marker row (`id = 1000`) has arrived.
pub fn events_through_marker(rx: &Receiver) -> Vec<Event> {
    wait_until(WAIT, "the marker row", || rx.accepted_ids().contains(&1000));
    rx.accepted()
        .iter()
        .map(|r| {
            let b = r.json();
            (
                b["type"].as_str().unwrap_or_default().to_string(),
                b["table"].as_str().unwrap_or_default().to_string(),
                b["record"].clone(),
                b["old_record"].clone(),
            )
        })
        .collect()
}

/// (type, table, new image, old image) as a test expects it; `""` for no image.
pub fn event(kind: &str, table: &str, record: &str, old: &str) -> Event {
    let image = |s: &str| {
        if s.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(s).unwrap_or_else(|e| panic!("bad expected image {s}: {e}"))
        }
    };
    (kind.into(), table.into(), image(record), image(old))
}

/// An event of `table`, whose rows are (id, qty).
pub fn id_qty(
    table: &str,
    kind: &str,
    record: Option<(i64, i64)>,
    old: Option<(i64, i64)>,
) -> Event {
    let image =
        |r: Option<(i64, i64)>| r.map_or(Value::Null, |(id, qty)| json!({"id": id, "qty": qty}));
    (kind.into(), table.into(), image(record), image(old))
}

/// Waits for the marker row, then checks the receiver accepted exactly `want` (in any order).
pub fn assert_exactly(rx: &Receiver, want: &[Event]) {
    let got = events_through_marker(rx);
    for e in want {
        assert!(got.contains(e), "missing {e:?} in {got:?}");
    }
    assert_eq!(got.len(), want.len(), "exactly these events: {got:?}");
}

/// Record ids the receiver accepted, with how many accepted requests carried each.
pub fn accepted_ids(rx: &Receiver) -> HashMap<i64, usize> {
    let mut ids = HashMap::new();
    for r in rx.accepted() {
        if let Some(id) = r.json()["record"]["id"].as_i64() {
            *ids.entry(id).or_default() += 1;
        }
    }
    ids
}

/// Waits until the receiver accepted exactly these record ids (each at least once).
pub fn wait_for_ids(rx: &Receiver, ids: &[i64], what: &str) {
    wait_until(WAIT, what, || {
        let got = accepted_ids(rx);
        ids.iter().all(|id| got.contains_key(id))
    });
}

/// The events the receiver accepted, counted inside its requests.
pub fn total_events(rx: &Receiver) -> usize {
    rx.accepted()
        .iter()
        .map(|r| r.json()["events"].as_array().map_or(0, Vec::len))
        .sum()
}

/// Checks that `requests` are one transaction's parts in order, each saying how many parts and
/// `events` it has; the ids of their rows, in order.
pub fn parts_in_order(requests: &[super::receiver::Request], events: u64) -> Vec<i64> {
    let mut ids = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let tx = &r.json()["transaction"];
        assert_eq!(tx["part"], i as u64 + 1, "parts arrive in order: {tx}");
        assert_eq!(tx["parts"], requests.len() as u64, "{tx}");
        assert_eq!(tx["events_total"], events, "{tx}");
        for e in r.json()["events"].as_array().into_iter().flatten() {
            ids.push(e["payload"]["record"]["id"].as_i64().unwrap_or_default());
        }
    }
    ids
}

/// The events of a batch request: (webhook-id, payload) for each.
pub fn members(r: &super::receiver::Request) -> Vec<(String, serde_json::Value)> {
    let body = r.json();
    let events = body["events"]
        .as_array()
        .or_else(|| body.as_array())
        .unwrap_or_else(|| panic!("not a batch: {body}"));
    events
        .iter()
        .map(|e| match e.get("payload") {
            Some(payload) => (
                e["webhook_id"].as_str().unwrap_or_default().to_string(),
                payload.clone(),
            ),
            // CloudEvents: each member is the event itself, its id the webhook-id.
            None => (e["id"].as_str().unwrap_or_default().to_string(), e.clone()),
        })
        .collect()
}

/// Record ids over every accepted batch.
pub fn batched_ids(rx: &Receiver) -> Vec<i64> {
    rx.accepted()
        .iter()
        .flat_map(members)
        .filter_map(|(_, p)| {
            p["record"]["id"]
                .as_i64()
                .or_else(|| p["data"]["record"]["id"].as_i64())
        })
        .collect()
}
