//! `group_by => 'transaction'`: an event too large to send is named in its transaction's part
//! (`"dead"`), so a receiver applying transactions all or nothing can tell it from one still to
//! come. One scenario per test.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Reply, Request};
use support::{alter_system, count, exec, grouped_table, text, WAIT};

/// The webhook-id of the event that wrote row `id`.
fn webhook_id_of_row(db: &mut postgres::Client, id: i32) -> String {
    text(
        db,
        &format!(
            "SELECT 'msg_' || s.uid || '_' || e.id FROM webhook.events e
               JOIN webhook.subscriptions s ON s.id = e.subscription_id
              WHERE e.record->>'id' = '{id}'"
        ),
    )
    .unwrap_or_else(|| panic!("no event for row {id}"))
}

/// The webhook-ids a request names dead, in order.
fn dead_ids(r: &Request) -> Vec<String> {
    r.json()["dead"]
        .as_array()
        .map(|dead| {
            dead.iter()
                .map(|d| d["webhook_id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every event of the table finished (delivered or dead).
fn all_finished(db: &mut postgres::Client, events: i64) {
    wait_until(WAIT, "every event finished", || {
        count(
            db,
            "SELECT count(*) FROM webhook.events WHERE status IN ('delivered', 'dead')",
        ) == events
    });
}

#[test]
fn a_part_names_the_event_too_large_to_send_beside_those_it_sends() {
    let pg = support::small_parts_cluster();
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(
        &mut db,
        "INSERT INTO t VALUES (1, 'small'), (2, repeat('x', 5000)), (3, 'small')",
    );
    let request = rx.wait_for(1, WAIT).remove(0);
    all_finished(&mut db, 3);
    let body = request.json();
    assert_eq!(request.row_ids(), [1, 3], "{body}");
    assert_eq!(body["transaction"]["events_total"], 3, "{body}");
    assert_eq!(body["transaction"]["parts"], 1, "{body}");
    let dead = &body["dead"][0];
    assert_eq!(dead["webhook_id"], webhook_id_of_row(&mut db, 2).as_str());
    assert_eq!(dead["operation"], "INSERT");
    assert_eq!(dead["reason"], "too_large");
    assert_eq!(body["dead"].as_array().map(Vec::len), Some(1), "{body}");
    let died = text(
        &mut db,
        "SELECT status || ': ' || last_error FROM webhook.events WHERE record->>'id' = '2'",
    )
    .unwrap_or_default();
    assert!(
        died.starts_with("dead: payload is") && died.contains("max_payload_bytes"),
        "{died}"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'delivered'"
        ),
        2
    );
    // Its endpoint answered: the subscription is not failing.
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.subscriptions WHERE failing_since IS NOT NULL"
        ),
        0
    );
}

#[test]
fn a_transaction_of_one_event_too_large_to_send_still_goes_naming_it() {
    let pg = support::small_parts_cluster();
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(&mut db, "INSERT INTO t VALUES (1, repeat('x', 5000))");
    let request = rx.wait_for(1, WAIT).remove(0);
    let body = request.json();
    assert_eq!(body["events"], serde_json::json!([]), "{body}");
    assert_eq!(body["transaction"]["events_total"], 1, "{body}");
    assert_eq!(dead_ids(&request), [webhook_id_of_row(&mut db, 1)]);
    all_finished(&mut db, 1);
    assert_eq!(
        text(&mut db, "SELECT status FROM webhook.events").as_deref(),
        Some("dead")
    );
}

#[test]
fn a_part_naming_a_dead_event_is_retried_until_delivered_and_the_event_dies_then() {
    let pg = support::small_parts_cluster();
    let refused = Arc::new(AtomicUsize::new(0));
    let r = refused.clone();
    let rx = Receiver::with(move |_, _| {
        if r.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::Status(503)
        } else {
            Reply::Status(204)
        }
    });
    let mut db = grouped_table(
        &pg,
        &rx,
        ", retry_schedule => ARRAY['100 milliseconds']::interval[], max_attempts => 10",
    );
    exec(&mut db, "INSERT INTO t VALUES (1, repeat('x', 5000))");
    wait_until(WAIT, "the part refused once", || !rx.requests().is_empty());
    // While the part is refused, the event it names waits with it.
    assert_eq!(
        text(
            &mut db,
            "SELECT status FROM webhook.events WHERE record->>'id' = '1'"
        )
        .as_deref(),
        Some("pending")
    );
    wait_until(WAIT, "the part accepted", || !rx.accepted().is_empty());
    all_finished(&mut db, 1);
    let sent = rx.requests();
    assert_eq!(sent.len(), 3, "twice refused, then accepted");
    assert!(
        sent.iter()
            .all(|r| r.id() == sent[0].id() && r.body == sent[0].body),
        "every try the same part"
    );
    let row = db
        .query_one(
            "SELECT status, attempts FROM webhook.events WHERE record->>'id' = '1'",
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(row.get::<_, String>(0), "dead");
    assert_eq!(row.get::<_, i32>(1), 3, "each try recorded on it");
}

#[test]
fn every_event_of_a_transaction_in_parts_is_sent_or_named_dead_once() {
    // 8 kB parts: 39 rows of ~300 bytes, and rows too large to send at the start, in the
    // middle and at the end.
    let pg = Cluster::start(&[
        "pg_webhook.max_payload_bytes = '8kB'",
        "pg_webhook.poll_interval = '100ms'",
    ]);
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', CASE WHEN g IN (1, 20, 42) THEN 9000 ELSE 300 END)
           FROM generate_series(1, 42) g",
    );
    all_finished(&mut db, 42);
    let accepted = rx.accepted();
    let parts: Vec<u64> = accepted
        .iter()
        .map(|r| r.json()["transaction"]["part"].as_u64().unwrap_or(0))
        .collect();
    let total = accepted[0].json()["transaction"]["parts"].as_u64();
    assert_eq!(parts, (1..=parts.len() as u64).collect::<Vec<_>>());
    assert_eq!(total, Some(parts.len() as u64), "every part sent, once");
    let sent: Vec<i64> = accepted.iter().flat_map(Request::row_ids).collect();
    let dead: Vec<String> = accepted.iter().flat_map(dead_ids).collect();
    let expected_dead: Vec<String> = [1, 20, 42]
        .into_iter()
        .map(|id| webhook_id_of_row(&mut db, id))
        .collect();
    assert_eq!(dead, expected_dead);
    let expected_sent: Vec<i64> = (1..=42).filter(|id| ![1, 20, 42].contains(id)).collect();
    assert_eq!(sent, expected_sent);
    for r in &accepted {
        assert_eq!(r.json()["transaction"]["events_total"], 42);
        assert!(r.body.len() <= 8192, "{} bytes", r.body.len());
    }
}

#[test]
fn cloudevents_parts_name_a_dead_event_as_an_event_of_its_own() {
    let pg = support::small_parts_cluster();
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, ", format => 'cloudevents'");
    exec(
        &mut db,
        "INSERT INTO t VALUES (1, 'small'), (2, repeat('x', 5000))",
    );
    let request = rx.wait_for(1, WAIT).remove(0);
    assert_eq!(
        request.header("content-type"),
        Some("application/cloudevents-batch+json")
    );
    let body = request.json();
    let events = body.as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 2, "{body}");
    let webhook_id = webhook_id_of_row(&mut db, 2);
    let note = &events[1];
    assert_eq!(note["type"], "pg_webhook.t.dead", "{body}");
    assert_eq!(note["id"], format!("{webhook_id}.dead").as_str());
    assert_eq!(note["data"]["webhook_id"], webhook_id.as_str());
    assert_eq!(note["data"]["reason"], "too_large");
    assert_eq!(note["pgtxevents"], 2);
    assert_eq!(note["pgtxid"], events[0]["pgtxid"]);
    assert_eq!(events[0]["data"]["record"]["id"], 1);
}

#[test]
fn a_dead_event_replayed_under_a_higher_limit_arrives_under_the_id_its_part_named() {
    let pg = support::small_parts_cluster();
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(
        &mut db,
        "INSERT INTO t VALUES (1, 'small'), (2, repeat('x', 5000))",
    );
    let first = rx.wait_for(1, WAIT).remove(0);
    all_finished(&mut db, 2);
    alter_system(&mut db, "SET pg_webhook.max_payload_bytes = '64kB'");
    // Replayed until the worker has read the new limit (until then it dies again).
    let replay = "SELECT webhook.replay(id) FROM webhook.events
                   WHERE record->>'id' = '2' AND status = 'dead'";
    let sent_row_2 = |r: &Request| r.row_ids().contains(&2);
    wait_until(WAIT, "row 2 sent", || {
        exec(&mut db, replay);
        rx.requests().iter().any(sent_row_2)
    });
    let replayed = rx
        .requests()
        .into_iter()
        .find(sent_row_2)
        .unwrap_or_else(|| panic!("row 2 not sent"));
    let ids: Vec<String> = replayed.json()["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|m| m["webhook_id"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        ids,
        dead_ids(&first),
        "the replay carries the id named dead"
    );
    assert_eq!(replayed.row_ids(), [2]);
}

#[test]
fn a_parts_webhook_id_never_names_an_event_dead_in_one_try_and_sends_it_in_another() {
    // The receiver takes the first try and its answer is lost (503 here); the limit is raised
    // before the retry, so the event named dead in the first try fits now. A receiver that
    // de-duplicates on webhook-id must not drop the try that carries it.
    let pg = support::small_parts_cluster();
    let rx = Receiver::with(|r, _| match r.row_ids().contains(&2) {
        true => Reply::Status(204),
        false => Reply::Status(503),
    });
    let mut db = grouped_table(
        &pg,
        &rx,
        ", retry_schedule => ARRAY['300 milliseconds']::interval[], max_attempts => 100",
    );
    exec(
        &mut db,
        "INSERT INTO t VALUES (1, 'small'), (2, repeat('x', 3000))",
    );
    let first = rx.wait_for(1, WAIT).remove(0);
    let named_dead = webhook_id_of_row(&mut db, 2);
    assert_eq!(dead_ids(&first), std::slice::from_ref(&named_dead));
    alter_system(&mut db, "SET pg_webhook.max_payload_bytes = '64kB'");
    all_finished(&mut db, 2);
    let requests = rx.requests();
    let carrying = requests
        .iter()
        .find(|r| r.row_ids().contains(&2))
        .unwrap_or_else(|| panic!("row 2 never sent"));
    for r in requests
        .iter()
        .filter(|r| dead_ids(r).contains(&named_dead))
    {
        assert_ne!(
            r.id(),
            carrying.id(),
            "one webhook-id named row 2 dead and carried it"
        );
    }
}

#[test]
fn a_part_naming_a_huge_dead_event_out_to_a_hanging_endpoint_holds_back_no_other_subscription() {
    // Row images past what a worker reads (over 4 x 2 kB, here 40 MB): never read, only named.
    // Counted against the worker's in-flight bytes (32 MB) while the part hangs, they stopped
    // every other subscription's requests until it timed out.
    let pg = support::small_parts_cluster();
    let hanging = Receiver::with(|_, _| Reply::Hang(std::time::Duration::from_secs(180)));
    let mut db = grouped_table(&pg, &hanging, ", timeout => '5 min'");
    let rx = Receiver::start();
    exec(&mut db, "CREATE TABLE other (id int PRIMARY KEY)");
    support::subscribe(&mut db, "other", "other", &rx.url("/other"), "");
    exec(&mut db, "INSERT INTO t VALUES (1, repeat('x', 40000000))");
    wait_until(WAIT, "the part out", || hanging.count() == 1);
    let part = hanging.requests().remove(0);
    assert_eq!(dead_ids(&part), [webhook_id_of_row(&mut db, 1)]);
    exec(&mut db, "INSERT INTO other VALUES (7)");
    wait_until(WAIT, "the other subscription's event sent", || {
        rx.count() == 1
    });
    let other = rx.requests().remove(0);
    assert_eq!(other.json()["record"]["id"], 7);
    assert_eq!(hanging.count(), 1, "the part still out");
}

#[test]
fn a_part_whose_attempts_are_spent_goes_on_whole_with_the_event_it_names() {
    // Past the schedule's attempts on a receiver answering 503 with Retry-After, the events the
    // part sends went on at the schedule's next point, and the one it names died at once: the
    // part went out again without naming it, under another webhook-id.
    let pg = support::small_parts_cluster();
    let rx = Receiver::with(|_, n| {
        if n < 3 {
            Reply::Full {
                status: 503,
                headers: vec![("Retry-After".into(), "1".into())],
                body: String::new(),
            }
        } else {
            Reply::Status(204)
        }
    });
    let mut db = grouped_table(
        &pg,
        &rx,
        ", retry_schedule => ARRAY['2 seconds', '4 seconds']::interval[], max_attempts => 3",
    );
    exec(
        &mut db,
        "INSERT INTO t VALUES (1, 'small'), (2, repeat('x', 5000))",
    );
    let got = rx.wait_for(4, WAIT);
    all_finished(&mut db, 2);
    let named = webhook_id_of_row(&mut db, 2);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.id(), got[0].id(), "request {i} is another");
        assert_eq!(dead_ids(r), [named.as_str()], "request {i}");
        assert_eq!(r.row_ids(), [1], "request {i}");
    }
    let statuses: Vec<String> = db
        .query(
            "SELECT status FROM webhook.events ORDER BY (record->>'id')::int",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, ["delivered", "dead"]);
}
