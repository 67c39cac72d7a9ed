//! The SQL API's work: `webhook.subscribe` and `webhook.unsubscribe` (declared in
//! sql/api.sql with their defaults and comments) call these after converting intervals.
//!
//! Checks run as the caller; the writes run as the extension owner (see privilege.rs).

use pg_webhook_core::payload::{parse_event_list, Operation};
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};

mod credentials;
mod delivery;
mod order_key;
mod owner;
mod sending;
mod shape;
mod store;
mod target;

use target::check_target;

use crate::error::{invalid, reject, spi};
use crate::manage::{find_managed, find_managed_if_exists};
use crate::privilege::{as_extension_owner, caller, caller_acts_as};
use crate::queue::UNPARK;

/// Subscription names are identifiers users type and see in logs: keep them printable and short.
const MAX_NAME_LEN: usize = 63;

const WEBHOOK_ADMIN: &str = include_str!("../../sql/queries/webhook_admin_role.sql");
const UNSUBSCRIBE_BY: &str = include_str!("../../sql/queries/unsubscribe_by.sql");
const DISCARD_QUEUED: &str = include_str!("../../sql/queries/discard_queued.sql");

/// Only superusers and members of webhook_admin create subscriptions (EXECUTE is granted to
/// that role too; this also covers a grant made by mistake).
fn check_may_subscribe() {
    let admin = spi(
        "looking up webhook_admin",
        Spi::get_one::<pg_sys::Oid>(WEBHOOK_ADMIN),
    );
    let allowed = match admin {
        Some(role) => caller_acts_as(role),
        // SAFETY: catalog read.
        None => unsafe { pg_sys::superuser() },
    };
    if !allowed {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to create a webhook subscription: it is reserved to superusers and members of webhook_admin",
            Some("a superuser can run GRANT webhook_admin TO <role>;"),
        );
    }
}

fn check_name(name: Option<&str>) -> &str {
    let Some(name) = name else {
        invalid("name must not be NULL: give the subscription a name such as 'orders_to_billing'")
    };
    if name.trim().is_empty() {
        invalid("name must not be empty: give the subscription a name such as 'orders_to_billing'");
    }
    if name.chars().count() > MAX_NAME_LEN {
        invalid(format!(
            "name is {} characters long: the limit is {MAX_NAME_LEN}",
            name.chars().count()
        ));
    }
    if name.chars().any(char::is_control) {
        invalid("name contains a control character: use printable characters only");
    }
    name
}

fn check_events(events: Option<Vec<Option<String>>>) -> Vec<Operation> {
    let items = events.unwrap_or_else(|| {
        Operation::DEFAULT
            .iter()
            .map(|o| Some(o.as_event_name().to_string()))
            .collect()
    });
    let refs: Vec<Option<&str>> = items.iter().map(Option::as_deref).collect();
    parse_event_list(&refs).unwrap_or_else(|e| invalid(e.to_string()))
}

/// The 0.1.0 `_subscribe`, whose SQL declaration points at this symbol until
/// `ALTER EXTENSION pg_webhook UPDATE` replaces it; 0.2.0 does not declare it.
#[allow(clippy::too_many_arguments)]
#[pg_extern(name = "_subscribe", volatile, sql = false)]
#[search_path(pg_catalog, pg_temp)]
fn subscribe_impl(
    name: Option<&str>,
    target: Option<pg_sys::Oid>,
    url: Option<&str>,
    events: Option<Vec<Option<String>>>,
    secret: Option<&str>,
    headers: Option<JsonB>,
    timeout_ms: Option<i64>,
    max_attempts: Option<i32>,
    retry_schedule_ms: Option<Vec<Option<i64>>>,
    format: Option<&str>,
    filter: Option<&str>,
    columns: Option<Vec<Option<String>>>,
    exclude_columns: Option<Vec<Option<String>>>,
    skip_unchanged: Option<bool>,
) -> i32 {
    subscribe_with_delivery(
        name,
        target,
        url,
        events,
        secret,
        headers,
        timeout_ms,
        max_attempts,
        retry_schedule_ms,
        format,
        filter,
        columns,
        exclude_columns,
        skip_unchanged,
        None,
        None,
        None,
        None,
    )
}

/// The 0.2.0 `_subscribe`, whose SQL declaration points at this symbol until
/// `ALTER EXTENSION pg_webhook UPDATE` replaces it.
#[allow(clippy::too_many_arguments)]
#[pg_extern(name = "_subscribe", volatile, sql = false)]
#[search_path(pg_catalog, pg_temp)]
fn subscribe_with_delivery(
    name: Option<&str>,
    target: Option<pg_sys::Oid>,
    url: Option<&str>,
    events: Option<Vec<Option<String>>>,
    secret: Option<&str>,
    headers: Option<JsonB>,
    timeout_ms: Option<i64>,
    max_attempts: Option<i32>,
    retry_schedule_ms: Option<Vec<Option<i64>>>,
    format: Option<&str>,
    filter: Option<&str>,
    columns: Option<Vec<Option<String>>>,
    exclude_columns: Option<Vec<Option<String>>>,
    skip_unchanged: Option<bool>,
    ordered: Option<bool>,
    max_in_flight: Option<i32>,
    rate_limit: Option<f64>,
    callback: Option<pg_sys::Oid>,
) -> i32 {
    subscribe_with_options(
        name,
        target,
        url,
        events,
        secret,
        headers,
        timeout_ms,
        max_attempts,
        retry_schedule_ms,
        format,
        filter,
        columns,
        exclude_columns,
        skip_unchanged,
        ordered,
        max_in_flight,
        rate_limit,
        callback,
        None,
    )
}

/// Validates everything, stores the subscription and creates its capture trigger. `options`
/// carries the settings added since 0.3.0 (see `delivery::Options`), so that new ones do not
/// change this function's signature.
#[allow(clippy::too_many_arguments)]
#[pg_extern(name = "_subscribe", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn subscribe_with_options(
    name: Option<&str>,
    target: Option<pg_sys::Oid>,
    url: Option<&str>,
    events: Option<Vec<Option<String>>>,
    secret: Option<&str>,
    headers: Option<JsonB>,
    timeout_ms: Option<i64>,
    max_attempts: Option<i32>,
    retry_schedule_ms: Option<Vec<Option<i64>>>,
    format: Option<&str>,
    filter: Option<&str>,
    columns: Option<Vec<Option<String>>>,
    exclude_columns: Option<Vec<Option<String>>>,
    skip_unchanged: Option<bool>,
    ordered: Option<bool>,
    max_in_flight: Option<i32>,
    rate_limit: Option<f64>,
    callback: Option<pg_sys::Oid>,
    options: Option<JsonB>,
) -> i32 {
    let (payload, options) = shape::take_payload(options);
    let (options, credentials) = credentials::take(options, headers.as_ref());
    let delivery = delivery::check(ordered, max_in_flight, rate_limit, callback, options);
    check_may_subscribe();
    let name = check_name(name);
    let table = check_target(target);
    let sending = sending::check(
        url,
        secret,
        headers,
        timeout_ms,
        max_attempts,
        retry_schedule_ms,
        format,
    );
    let events = check_events(events);
    let shape = shape::check_shape(
        table.oid,
        &table.qualified,
        &events,
        filter,
        columns,
        exclude_columns,
        skip_unchanged.unwrap_or(false),
        payload.as_deref(),
    );
    if let Some(key) = &delivery.order_key {
        order_key::check(table.oid, &table.qualified, key);
    }
    let id = store::store(&store::NewSubscription {
        name,
        table: &table,
        events: &events,
        sending: &sending,
        shape: &shape,
        delivery: &delivery,
        credentials: &credentials,
    });
    store::note_instance(id);
    crate::triggers::sync(id);
    crate::wake::note_config_changed();
    warn_if_undeliverable();
    id
}

/// Subscribing works anywhere, but delivery needs the preloaded worker in this database.
fn warn_if_undeliverable() {
    if !crate::is_preloaded() {
        ereport!(
            WARNING,
            PgSqlErrorCode::ERRCODE_WARNING,
            "pg_webhook is not in shared_preload_libraries: events will queue but not be delivered",
            "add pg_webhook to shared_preload_libraries in postgresql.conf and restart the server"
        );
        return;
    }
    let current = crate::sql::database_name().unwrap_or_default();
    if !crate::guc::serves(&current) {
        ereport!(
            WARNING,
            PgSqlErrorCode::ERRCODE_WARNING,
            format!(
                "pg_webhook.database = '{}' limits delivery to that database: events in \"{current}\" will queue but not be delivered",
                crate::guc::served_database()
            ),
            format!("set pg_webhook.database = '' (every database) or '{current}', and reload the configuration")
        );
    }
}

/// Stops capturing changes for a subscription. Queued events are still delivered unless
/// `discard_queued` — parked ones too, if it was paused or disabled; the row stays (status
/// 'unsubscribed') as the record of what was sent.
#[pg_extern(name = "_unsubscribe", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn unsubscribe_impl(
    name: Option<&str>,
    discard_queued: Option<bool>,
    if_exists: Option<bool>,
) -> bool {
    let sub = if if_exists.unwrap_or(false) {
        match find_managed_if_exists(name, "unsubscribe") {
            Some(sub) => sub,
            None => return false,
        }
    } else {
        find_managed(name, "unsubscribe")
    };
    // Read before switching to the extension owner, who would be recorded instead.
    let unsubscriber = caller();
    as_extension_owner(|| {
        spi(
            "removing the subscription",
            Spi::connect_mut(|client| {
                client.update(UNSUBSCRIBE_BY, None, &[sub.id.into(), unsubscriber.into()])?;
                if discard_queued.unwrap_or(false) {
                    client.update(DISCARD_QUEUED, None, &[sub.id.into()])?;
                } else {
                    client.update(UNPARK, None, &[vec![sub.id].into()])?;
                }
                Ok(())
            }),
        )
    });
    crate::triggers::sync(sub.id);
    crate::wake::note_config_changed();
    crate::wake::note_schedule_changed();
    true
}
