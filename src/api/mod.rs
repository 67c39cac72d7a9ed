//! The SQL API's work: `webhook.subscribe` and `webhook.unsubscribe` (declared in
//! sql/api.sql with their defaults and comments) call these after converting intervals.
//!
//! Checks run as the caller; the writes run as the extension owner (see privilege.rs).

use pg_webhook_core::endpoint::parse_url;
use pg_webhook_core::headers::parse_headers;
use pg_webhook_core::payload::{new_subscription_uid, parse_event_list, Format, Operation};
use pg_webhook_core::retry::RetryPolicy;
use pg_webhook_core::signing::Secret;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use pgrx::{JsonB, PgSqlErrorCode};

mod delivery;
mod shape;

use delivery::Delivery;

use crate::error::{invalid, reject, spi};
use crate::manage::{find_managed, find_managed_if_exists};
use crate::privilege::{
    as_extension_owner, caller, caller_acts_as, caller_can_select, caller_can_trigger,
    forget_owner, rls_applies_to_caller,
};
use crate::triggers::UNPARK;

/// Subscription names are identifiers users type and see in logs: keep them printable and short.
const MAX_NAME_LEN: usize = 63;
/// Per-subscription timeout bounds.
const MAX_TIMEOUT_MS: i64 = 300_000;

struct Table {
    schema: String,
    name: String,
}

/// Only superusers and members of webhook_admin create subscriptions (EXECUTE is granted to
/// that role too; this also covers a grant made by mistake).
fn check_may_subscribe() {
    let admin = spi(
        "looking up webhook_admin",
        Spi::get_one::<pg_sys::Oid>(
            "SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'webhook_admin'",
        ),
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

/// Looks up the target and refuses what cannot be watched safely.
fn check_target(target: Option<pg_sys::Oid>) -> Table {
    let Some(target) = target else {
        invalid("target must not be NULL: give the table to watch, such as 'public.orders'")
    };
    let row = spi(
        "looking up the target table",
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT c.relkind::text, n.nspname::text, c.relname::text, c.relpersistence::text
                   FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = $1",
                Some(1),
                &[target.into()],
            )?;
            if rows.is_empty() {
                return Ok(None);
            }
            let row = rows.first();
            Ok(Some((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
                row.get::<String>(3)?.unwrap_or_default(),
                row.get::<String>(4)?.unwrap_or_default(),
            )))
        }),
    );
    let Some((kind, schema, name, persistence)) = row else {
        reject(
            PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!("target table with OID {} does not exist", target.to_u32()),
            None,
        )
    };
    let qualified = format!("{}.{}", quote_identifier(&schema), quote_identifier(&name));
    let unsupported = |what: &str, hint: &str| -> ! {
        reject(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("target {qualified} is {what}, which cannot be subscribed"),
            Some(hint),
        )
    };
    if schema == "pg_catalog" || schema == "information_schema" || schema.starts_with("pg_toast") {
        unsupported("a system catalog", "subscribe to your own tables");
    }
    if schema == "webhook" {
        unsupported(
            "one of pg_webhook's own tables",
            "subscribe to your own tables",
        );
    }
    if persistence == "t" {
        unsupported(
            "a temporary table",
            "temporary tables vanish with their session; use an ordinary table",
        );
    }
    match kind.as_str() {
        "r" | "p" => {}
        "v" => unsupported("a view", "subscribe to the table the view reads from"),
        "m" => unsupported(
            "a materialized view",
            "subscribe to the tables it is built from",
        ),
        "f" => unsupported(
            "a foreign table",
            "subscribe to the table on the server that owns it",
        ),
        _ => unsupported("not a table", "give an ordinary or partitioned table"),
    }
    if let Some(parent) = parent_of(target) {
        reject(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("cannot subscribe to {qualified}: it is a partition (or inheritance child) of {parent}, and a statement through {parent} would not fire its triggers"),
            Some(&format!("subscribe {parent}: changes written to any of its partitions, directly or through it, are sent (add a filter if only some rows matter)")),
        );
    }
    check_may_read_and_attach(target, &qualified);
    Table { schema, name }
}

/// The table `target` is a partition or inheritance child of, if any.
fn parent_of(target: pg_sys::Oid) -> Option<String> {
    spi(
        "looking up the table's parent",
        Spi::get_one_with_args::<String>(
            "SELECT (SELECT i.inhparent::pg_catalog.regclass::pg_catalog.text
                       FROM pg_catalog.pg_inherits i
                      WHERE i.inhrelid OPERATOR(pg_catalog.=) $1 LIMIT 1)",
            &[target.into()],
        ),
    )
}

/// A webhook sends the table's rows (so the caller must be able to read all of them) and
/// runs in every writer's transaction, as a trigger does (so the caller must be allowed to add
/// triggers to the table).
fn check_may_read_and_attach(target: pg_sys::Oid, qualified: &str) {
    if !caller_can_select(target) {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to subscribe to {qualified}: a webhook sends its rows, so you need SELECT on it"),
            Some(&format!("GRANT SELECT ON {qualified} TO <your role>;")),
        );
    }
    if !caller_can_trigger(target) {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to subscribe to {qualified}: a subscription is a trigger that runs in every writer's transaction, so you need the TRIGGER privilege on it (or to own it)"),
            Some(&format!("GRANT TRIGGER ON {qualified} TO <your role>;")),
        );
    }
    if rls_applies_to_caller(target) {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("cannot subscribe to {qualified}: row-level security policies limit which of its rows you may read, and a webhook would send every row"),
            Some("a role the policies do not apply to (the table's owner, or a role with BYPASSRLS) can subscribe it, with a filter if only some rows may leave"),
        );
    }
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

/// Validates everything, stores the subscription and creates its capture trigger.
#[allow(clippy::too_many_arguments)]
#[pg_extern(name = "_subscribe", volatile)]
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
    let delivery = delivery::check(ordered, max_in_flight, rate_limit, callback);
    check_may_subscribe();
    let name = check_name(name);
    let table = check_target(target);
    let format: Format = format
        .unwrap_or("database")
        .parse()
        .unwrap_or_else(|e: pg_webhook_core::payload::UnknownFormat| invalid(e.to_string()));
    let Some(url) = url else {
        invalid("url must not be NULL: give the endpoint, such as 'https://example.com/hooks'")
    };
    let url = parse_url(url).unwrap_or_else(|e| invalid(e.to_string()));
    let events = check_events(events);
    let secret = match secret {
        None => Secret::generate(),
        Some(text) => Secret::parse(text),
    }
    .unwrap_or_else(|e| invalid(e.to_string()));
    let headers = headers.map_or(serde_json::json!({}), |j| j.0);
    parse_headers(&headers).unwrap_or_else(|e| invalid(e.to_string()));
    if let Some(ms) = timeout_ms {
        if !(1..=MAX_TIMEOUT_MS).contains(&ms) {
            invalid(format!(
                "timeout of {ms} ms is out of range: it must be between 1 ms and 5 minutes"
            ));
        }
    }
    let schedule: Option<Vec<i64>> = retry_schedule_ms.map(|items| {
        items
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                d.unwrap_or_else(|| {
                    invalid(format!(
                        "retry_schedule[{}] is NULL: give an interval",
                        i + 1
                    ))
                })
            })
            .collect()
    });
    let policy = RetryPolicy::new(schedule.as_deref(), max_attempts.map(i64::from))
        .unwrap_or_else(|e| invalid(e.to_string()));
    let Some(target) = target else {
        unreachable!("check_target refused NULL")
    };
    let qualified = format!(
        "{}.{}",
        quote_identifier(&table.schema),
        quote_identifier(&table.name)
    );
    let shape = shape::check_shape(
        target,
        &qualified,
        &events,
        filter,
        columns,
        exclude_columns,
        skip_unchanged.unwrap_or(false),
    );

    forget_owner();
    // The private tables are read as the extension owner; the caller has no rights on them.
    let taken = as_extension_owner(|| {
        spi(
            "checking the subscription name",
            Spi::connect(|client| {
                Ok(!client
                .select(
                    "SELECT 1 FROM webhook._subscriptions WHERE name = $1 AND status <> 'unsubscribed'",
                    Some(1),
                    &[name.into()],
                )?
                .is_empty())
            }),
        )
    });
    if taken {
        reject(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("subscription \"{name}\" already exists"),
            Some(&format!(
                "choose another name, or remove it first with SELECT webhook.unsubscribe({});",
                quote_literal(name)
            )),
        );
    }
    let uid = new_subscription_uid()
        .unwrap_or_else(|e| invalid(format!("could not generate a subscription id: {e}")));
    let owner = caller();
    let event_names: Vec<String> = events
        .iter()
        .map(|o| o.as_event_name().to_string())
        .collect();
    let id = as_extension_owner(|| {
        spi(
            "storing the subscription",
            Spi::connect_mut(|client| {
                let id: i32 = client
                    .update(
                        "SELECT nextval('webhook._subscription_id_seq')::int",
                        None,
                        &[],
                    )?
                    .first()
                    .get_one()?
                    .unwrap_or_default();
                let trigger = format!("pg_webhook_{id}");
                client.update(
                    "INSERT INTO webhook._subscriptions
                        (id, uid, name, target, url, events, secret, headers, timeout,
                         max_attempts, retry_schedule, owner, trigger_name, format, filter,
                         columns, exclude_columns, skip_unchanged)
                     VALUES ($1, $2, $3, $4::oid::regclass, $5, $6, $7, $8::jsonb,
                             $9::bigint * interval '1 millisecond', $10,
                             CASE WHEN $11::bigint[] IS NULL THEN NULL
                                  ELSE ARRAY(SELECT d * interval '1 millisecond'
                                               FROM unnest($11::bigint[]) WITH ORDINALITY AS u(d, o)
                                              ORDER BY o) END,
                             $12::oid::regrole, $13, $14, $15, $16, $17, $18)",
                    None,
                    &[
                        id.into(),
                        uid.as_str().into(),
                        name.into(),
                        target.into(),
                        url.as_str().into(),
                        event_names.clone().into(),
                        secret.to_text().into(),
                        headers.to_string().into(),
                        timeout_ms.into(),
                        (policy.max_attempts() as i32).into(),
                        schedule.clone().into(),
                        owner.into(),
                        trigger.as_str().into(),
                        format.as_str().into(),
                        shape.filter.clone().into(),
                        shape.columns.clone().into(),
                        shape.exclude_columns.clone().into(),
                        shape.skip_unchanged.into(),
                    ],
                )?;
                // Apart, so the 0.1.0 entry point keeps working on a 0.1.0 schema (between
                // installing a new library and ALTER EXTENSION ... UPDATE).
                if delivery != Delivery::default() {
                    client.update(
                        "UPDATE webhook._subscriptions
                            SET ordered = $2, max_in_flight = $3, rate_limit = $4,
                                callback = $5::oid::regprocedure
                          WHERE id = $1",
                        None,
                        &[
                            id.into(),
                            delivery.ordered.into(),
                            delivery.max_in_flight.into(),
                            delivery.rate_limit.into(),
                            delivery.callback.into(),
                        ],
                    )?;
                }
                Ok(id)
            }),
        )
    });
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
    let current = spi(
        "reading the database name",
        Spi::get_one::<String>("SELECT pg_catalog.current_database()::text"),
    )
    .unwrap_or_default();
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
    as_extension_owner(|| {
        spi(
            "removing the subscription",
            Spi::connect_mut(|client| {
                client.update(
                    "UPDATE webhook._subscriptions
                        SET status = 'unsubscribed',
                            status_reason = pg_catalog.format('unsubscribed by %s at %s',
                                                              $2::oid::regrole, pg_catalog.now())
                      WHERE id = $1",
                    None,
                    &[sub.id.into(), caller().into()],
                )?;
                if discard_queued.unwrap_or(false) {
                    client.update(
                        "DELETE FROM webhook._event_queue WHERE subscription_id = $1",
                        None,
                        &[sub.id.into()],
                    )?;
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
