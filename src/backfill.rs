//! `webhook.backfill()` and `webhook.cancel_backfill()`: the checks and the row that asks the
//! callback runner to send a table's existing rows (the chunks themselves are
//! `capture::backfill`, run by the callback runner: see `worker::backfills`). Checks run as the caller,
//! user SQL as the subscription's owner, writes as the extension owner.

use pgrx::prelude::*;
use pgrx::spi::quote_identifier;
use pgrx::PgSqlErrorCode;

use crate::capture::primary_key::{names_and_order, primary_key, rows_query};
use crate::error::{invalid, reject, spi};
use crate::manage::find_managed;
use crate::privilege::{as_extension_owner, caller, plan_problem};
use crate::sql::first_row;
use crate::wake::note_schedule_changed;

const SUBSCRIPTION: &str = include_str!("../sql/backfill/subscription.sql");
const OWNER_ACCESS: &str = include_str!("../sql/backfill/owner_access.sql");
const RUNNING: &str = include_str!("../sql/backfill/running.sql");
const START: &str = include_str!("../sql/backfill/start.sql");
const CANCEL: &str = include_str!("../sql/backfill/cancel.sql");

/// One backfill per subscription at a time.
fn already_running(name: &str, detail: &str) -> ! {
    reject(
        PgSqlErrorCode::ERRCODE_OBJECT_IN_USE,
        format!("a backfill of subscription \"{name}\" is already running ({detail})"),
        Some(&format!(
            "wait for it to finish (SELECT * FROM webhook.backfills), or stop it first: SELECT webhook.cancel_backfill('{}');",
            name.replace('\'', "''")
        )),
    )
}

/// Starts a backfill of subscription `name`; returns its id.
#[pg_extern(name = "_backfill", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn backfill_impl(name: Option<&str>, filter: Option<&str>) -> i64 {
    let sub = find_managed(name, "backfill");
    let name = name.unwrap_or_default();
    let quoted_name = name.replace('\'', "''");
    let also = match filter.map(str::trim) {
        Some("") => invalid(
            "filter is empty: give a condition over the table's columns such as $$placed_at > now() - interval '30 days'$$, or pass NULL",
        ),
        other => other.map(str::to_string),
    };
    if let Some(also) = &also {
        crate::expression::ensure_one("filter", also, "$$placed_at > now() - interval '30 days'$$");
    }
    let (target, owner, denied, running) = as_extension_owner(|| {
        spi(
            "reading the subscription",
            Spi::connect(|client| {
                let (target, owner) = first_row(client, SUBSCRIPTION, &[sub.id.into()], |r| {
                    Ok((
                        r.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::Oid::INVALID),
                        r.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::Oid::INVALID),
                    ))
                })?
                .unwrap_or((pg_sys::Oid::INVALID, pg_sys::Oid::INVALID));
                let denied = first_row(client, OWNER_ACCESS, &[sub.id.into()], |r| {
                    r.get::<String>(1)
                })?
                .flatten();
                let running = first_row(client, RUNNING, &[sub.id.into()], |r| {
                    Ok((
                        r.get::<String>(1)?.unwrap_or_default(),
                        r.get::<i64>(2)?.unwrap_or_default(),
                    ))
                })?;
                Ok((target, owner, denied, running))
            }),
        )
    });
    if let Some((started, sent)) = running {
        already_running(name, &format!("started {started}, {sent} rows sent so far"));
    }
    if let Some(denied) = denied {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("cannot backfill \"{name}\": {denied}"),
            Some("a backfill sends the table's rows as its owner reads them: the owner needs SELECT on the whole table"),
        );
    }
    let Some(info) = crate::capture::subscription_info(sub.id, target) else {
        invalid(format!("subscription \"{name}\" has no table to backfill"))
    };
    let table = format!(
        "{}.{}",
        quote_identifier(&info.schema),
        quote_identifier(&info.table)
    );
    let pk = spi(
        "reading the primary key",
        Spi::connect(|client| primary_key(client, target)),
    );
    if pk.is_empty() {
        reject(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("table {table} has no primary key, so it cannot be backfilled: a backfill reads the table in primary key order, a short transaction per chunk, and resumes after the last key sent"),
            Some(&format!(
                "add one (ALTER TABLE {table} ADD PRIMARY KEY (...)), then call webhook.backfill('{quoted_name}') again"
            )),
        );
    }
    let (columns, order_by) = names_and_order(&pk, "new");
    // Checked now, as the owner the chunks will run it as: bad SQL is an error here, not a
    // failed backfill later. Planned, not run.
    let query = info.shape.backfill_query(
        &rows_query(&table, &pk, false, false, Some(0)),
        &columns,
        &order_by,
        also.as_deref(),
        &info.table,
        None,
    );
    if let Some(problem) = plan_problem(owner, &query) {
        invalid(format!(
            "filter is not valid for a backfill of {table}: {problem} (write a boolean condition over the table's columns, as in a WHERE clause; names outside pg_catalog must be schema-qualified)"
        ));
    }
    // Read before switching to the extension owner, who would be recorded instead.
    let starter = caller();
    let id = as_extension_owner(|| {
        spi(
            "starting the backfill",
            Spi::connect_mut(|client| {
                let started = client.update(
                    START,
                    Some(1),
                    &[
                        sub.id.into(),
                        also.clone().into(),
                        columns.clone().into(),
                        starter.into(),
                        target.into(),
                        owner.into(),
                    ],
                )?;
                if started.is_empty() {
                    return Ok(None);
                }
                started.first().get_one::<i64>()
            }),
        )
    });
    let Some(id) = id else {
        already_running(name, "another session just started it")
    };
    // Wakes the callback runner at commit, which starts the chunks.
    note_schedule_changed();
    id
}

/// Cancels subscription `name`'s running backfill; false when none was running.
#[pg_extern(name = "_cancel_backfill", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn cancel_backfill_impl(name: Option<&str>) -> bool {
    let sub = find_managed(name, "cancel the backfill of");
    let canceler = caller();
    as_extension_owner(|| {
        spi(
            "canceling the backfill",
            Spi::connect_mut(|client| {
                Ok(!client
                    .update(CANCEL, None, &[sub.id.into(), canceler.into()])?
                    .is_empty())
            }),
        )
    })
}
