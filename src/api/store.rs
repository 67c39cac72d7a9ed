//! Writing a new subscription's row, as the extension owner (the caller has no rights on the
//! private table), once every argument has been checked.

use pg_webhook_core::payload::{new_subscription_uid, Operation};
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use pgrx::PgSqlErrorCode;

use super::credentials::Credentials;
use super::delivery::{Batching, Delivery};
use super::sending::Sending;
use super::target::Table;
use crate::capture::shaped::Shape;
use crate::error::{invalid, reject, spi};
use crate::privilege::{as_extension_owner, caller, forget_owner};

const SET_INSTANCE: &str = include_str!("../../sql/queries/set_instance.sql");
const INSERT: &str = include_str!("../../sql/queries/insert_subscription.sql");
const SET_DELIVERY: &str = include_str!("../../sql/queries/set_delivery.sql");
const BIND_CALLBACK: &str = include_str!("../../sql/queries/bind_callback.sql");
const SET_OPTIONS: &str = include_str!("../../sql/queries/set_options.sql");
const NAME_TAKEN: &str = include_str!("../../sql/queries/name_taken.sql");
const NEXT_ID: &str = include_str!("../../sql/queries/next_subscription_id.sql");

/// Everything a new subscription is made of.
pub struct NewSubscription<'a> {
    pub name: &'a str,
    pub table: &'a Table,
    pub events: &'a [Operation],
    pub sending: &'a Sending,
    pub shape: &'a Shape,
    pub delivery: &'a Delivery,
    pub credentials: &'a Credentials,
}

/// Refuses a name a live subscription already has.
fn ensure_name_free(name: &str) {
    let taken = as_extension_owner(|| {
        spi(
            "checking the subscription name",
            Spi::connect(|client| {
                Ok(!client
                    .select(NAME_TAKEN, Some(1), &[name.into()])?
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
}

/// Refuses a new subscription while a trigger of pg_webhook names one that has no row: the
/// database is half restored (the schema, with its capture triggers, but not yet the data that
/// brings webhook._subscriptions and its id sequence). The sequence is back at its start then,
/// so the new subscription would take an id that a restored trigger or row has, and the data
/// restore would fail on it, or the restored trigger capture for the new subscription.
fn ensure_not_half_restored() {
    let stray = crate::triggers::naming_no_subscription();
    let Some((id, trigger, table)) = stray.first() else {
        return;
    };
    reject(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!(
            "trigger {} on {table} names subscription {id}, which does not exist ({} such trigger(s)): this database looks restored without its data (pg_restore --schema-only), and a new subscription would take an id the restore is yet to bring",
            quote_identifier(trigger),
            stray.len()
        ),
        Some(&format!(
            "restore the data first (pg_restore --data-only --disable-triggers), or, if subscription {id} is not coming back, drop its triggers (DROP TRIGGER {} ON {table};); then subscribe again",
            quote_identifier(trigger)
        )),
    );
}

/// Stores the subscription, owned by the caller, and returns its id. Its triggers are made
/// afterwards, from the stored row.
pub fn store(new: &NewSubscription<'_>) -> i32 {
    forget_owner();
    ensure_name_free(new.name);
    ensure_not_half_restored();
    let uid = new_subscription_uid()
        .unwrap_or_else(|e| invalid(format!("could not generate a subscription id: {e}")));
    let owner = caller();
    let events: Vec<String> = new
        .events
        .iter()
        .map(|o| o.as_event_name().to_string())
        .collect();
    let (sending, shape, delivery) = (new.sending, new.shape, new.delivery);
    as_extension_owner(|| {
        spi(
            "storing the subscription",
            Spi::connect_mut(|client| {
                let id: i32 = client
                    .update(NEXT_ID, None, &[])?
                    .first()
                    .get_one()?
                    .unwrap_or_default();
                let trigger = format!("pg_webhook_{id}");
                client.update(
                    INSERT,
                    None,
                    &[
                        id.into(),
                        uid.as_str().into(),
                        new.name.into(),
                        new.table.oid.into(),
                        sending.url.as_str().into(),
                        events.clone().into(),
                        sending.secret.to_text().into(),
                        sending.headers.to_string().into(),
                        sending.timeout_ms.into(),
                        (sending.policy.max_attempts() as i32).into(),
                        sending.schedule.clone().into(),
                        owner.into(),
                        trigger.as_str().into(),
                        sending.format.as_str().into(),
                        shape.filter.clone().into(),
                        shape.columns.clone().into(),
                        shape.exclude_columns.clone().into(),
                        shape.skip_unchanged.into(),
                    ],
                )?;
                if delivery.has_own_limits() {
                    client.update(
                        SET_DELIVERY,
                        None,
                        &[
                            id.into(),
                            delivery.ordered.into(),
                            delivery.max_in_flight.into(),
                            delivery.rate_limit.into(),
                            delivery.callback.into(),
                        ],
                    )?;
                    // Kept by signature too since 0.3.0 (an older entry point's schema has
                    // neither column, nor _instance).
                    if let Some(callback) = delivery.callback.filter(|_| {
                        crate::sql::webhook_relation(c"_instance") != pgrx::pg_sys::Oid::INVALID
                    }) {
                        client.update(BIND_CALLBACK, None, &[id.into(), callback.into()])?;
                    }
                }
                if delivery.batching != Batching::default()
                    || delivery.order_key.is_some()
                    || delivery.group_by.is_some()
                    || shape.payload.is_some()
                {
                    client.update(
                        SET_OPTIONS,
                        None,
                        &[
                            id.into(),
                            delivery.batching.size.into(),
                            delivery.batching.wait_ms.into(),
                            delivery.order_key.clone().into(),
                            delivery.group_by.clone().into(),
                            shape.payload.clone().into(),
                        ],
                    )?;
                }
                if !new.credentials.is_empty() {
                    super::credentials::store(client, id, new.credentials)?;
                }
                Ok(id)
            }),
        )
    })
}

/// Notes that subscription `id`'s uid was made in this copy of the database (a copy restored
/// from a dump gives its restored subscriptions new uids: `queue::renew_foreign_uids`). Not on
/// the SQL objects of a version before 0.3.0, which an older entry point subscribes into until
/// ALTER EXTENSION pg_webhook UPDATE (which notes every subscription there is).
pub fn note_instance(id: i32) {
    if crate::sql::webhook_relation(c"_instance") == pgrx::pg_sys::Oid::INVALID {
        return;
    }
    as_extension_owner(|| {
        spi(
            "noting the subscription's database copy",
            Spi::connect_mut(|client| {
                client.update(SET_INSTANCE, None, &[id.into()])?;
                Ok(())
            }),
        )
    });
}
