//! What a worker reads to cut a transaction into parts and to send them is bounded. A part
//! reads its events' row images again when it goes, those of the events that die in it too,
//! which it names in a note of a few hundred bytes: thousands of 4 MiB events fit one part of
//! 1 MiB, and sending it read gigabytes of text (and the cut read pages of 1,000 of them).

mod support;

use support::cluster::{wait_until, Cluster};
use support::receiver::{Receiver, Request};
use support::{count, exec, grouped_table, LONG_WAIT};

/// Every event of the table finished (delivered or dead), and what was accepted.
fn finished(db: &mut postgres::Client, rx: &Receiver, events: i64) -> Vec<Request> {
    wait_until(LONG_WAIT, "every event finished", || {
        count(
            db,
            "SELECT count(*) FROM webhook.events WHERE status IN ('delivered', 'dead')",
        ) == events
    });
    let accepted = rx.accepted();
    let parts: Vec<u64> = accepted
        .iter()
        .map(|r| r.json()["transaction"]["part"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        parts,
        (1..=parts.len() as u64).collect::<Vec<_>>(),
        "each part once, in order"
    );
    for r in &accepted {
        assert_eq!(r.json()["transaction"]["events_total"], events);
    }
    accepted
}

/// Events a part names: those it sends and those it names dead.
fn named(r: &Request) -> usize {
    let json = r.json();
    let n = |k: &str| json[k].as_array().map_or(0, Vec::len);
    n("events") + n("dead")
}

#[test]
fn a_part_holds_few_events_too_large_to_send_that_it_would_read_again() {
    // Parts of 2 kB, images read up to 8 kB: rows of 5 kB die, each named in a note of about
    // 150 bytes. A part now takes events whose images hold at most 8 x 2 kB: three of them.
    let pg = support::small_parts_cluster();
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat('x', 5000) FROM generate_series(1, 40) g",
    );
    let accepted = finished(&mut db, &rx, 40);
    let most = accepted.iter().map(named).max().unwrap_or(0);
    assert!(most <= 3, "a part named {most} events of 5 kB");
    assert_eq!(
        accepted.iter().map(named).sum::<usize>(),
        40,
        "each named once"
    );
    assert_eq!(
        count(
            &mut db,
            "SELECT count(*) FROM webhook.events WHERE status = 'dead'"
        ),
        40
    );
}

#[test]
fn a_transaction_larger_than_a_cut_pages_bytes_is_cut_whole() {
    // 96 rows of 512 kB (48 MiB): a cut page holds at most 32 MiB of images, so the cut reads
    // it in more pages than its 1,000 events would take, and loses or repeats none of them.
    let pg = Cluster::start(&["pg_webhook.poll_interval = '100ms'"]);
    let rx = Receiver::start();
    let mut db = grouped_table(&pg, &rx, "");
    exec(
        &mut db,
        "INSERT INTO t SELECT g, repeat(md5(g::text), 512 * 1024 / 32) FROM generate_series(1, 96) g",
    );
    let accepted = finished(&mut db, &rx, 96);
    let rows: Vec<i64> = accepted.iter().flat_map(Request::row_ids).collect();
    assert_eq!(
        rows,
        (1..=96).collect::<Vec<i64>>(),
        "every row once, in order"
    );
}
