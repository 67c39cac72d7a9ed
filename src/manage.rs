//! Operating a subscription after it exists: pause and resume, replay, secret rotation. Each
//! checks that the caller owns the subscription (or is a superuser), then writes as the
//! extension owner. The public SQL wrappers are in sql/api.sql.

use pg_webhook_core::signing::Secret;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use crate::error::{invalid, reject, spi};
use crate::privilege::{
    as_extension_owner, caller, caller_acts_as, forget_owner, visible_subscriptions,
};
use crate::sql::first_row;
use crate::wake::{note_config_changed, note_schedule_changed};

const MANAGED: &str = include_str!("../sql/queries/managed_subscription.sql");
const REPLAY: &str = include_str!("../sql/queries/replay.sql");
const PAUSE: &str = include_str!("../sql/queries/pause.sql");
const RESUME: &str = include_str!("../sql/queries/resume.sql");
const ARCHIVED_EVENT: &str = include_str!("../sql/queries/archived_event_subscription.sql");
const EVENT_PENDING: &str = include_str!("../sql/queries/event_pending.sql");
const ROTATE_SECRET: &str = include_str!("../sql/queries/rotate_secret.sql");

/// A live subscription the caller may manage.
pub(crate) struct Managed {
    pub id: i32,
    pub status: String,
    /// Its owner's role was dropped (see `_subscriptions.owner_dropped`).
    pub orphan: bool,
}

/// Finds a live subscription by name and checks the caller may `action` it.
pub(crate) fn find_managed(name: Option<&str>, action: &str) -> Managed {
    match find_managed_if_exists(name, action) {
        Some(managed) => managed,
        None => reject(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "subscription \"{}\" does not exist",
                crate::error::shown(name.unwrap_or_default())
            ),
            Some(
                "SELECT name FROM webhook.subscriptions WHERE status <> 'unsubscribed'; lists them",
            ),
        ),
    }
}

/// As `find_managed`, but `None` when there is no such live subscription (or the caller may
/// not see it).
pub(crate) fn find_managed_if_exists(name: Option<&str>, action: &str) -> Option<Managed> {
    let Some(name) = name else {
        invalid("name must not be NULL: give the subscription's name")
    };
    forget_owner();
    let found = as_extension_owner(|| {
        spi(
            "looking up the subscription",
            Spi::connect(|client| {
                first_row(client, MANAGED, &[name.into()], |row| {
                    Ok((
                        row.get::<i32>(1)?.unwrap_or_default(),
                        row.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::Oid::INVALID),
                        row.get::<String>(3)?.unwrap_or_default(),
                        row.get::<bool>(4)?.unwrap_or(false),
                    ))
                })
            }),
        )
    });
    let (id, owner, status, orphan) = found?;
    if !caller_acts_as(owner) {
        // One the caller may not even see (another owner's with a filter, say) is answered as
        // one that does not exist: the error must not confirm its name.
        if !visible_subscriptions().contains(&id) {
            return None;
        }
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {action} \"{name}\": only its owner or a superuser may"),
            None,
        );
    }
    Some(Managed { id, status, orphan })
}

fn write<R>(
    what: &str,
    f: impl FnOnce(&mut pgrx::spi::SpiClient<'_>) -> pgrx::spi::SpiResult<R>,
) -> R {
    as_extension_owner(|| spi(what, Spi::connect_mut(f)))
}

/// Pauses delivery (events keep queueing) or resumes it, un-parking held events. Resuming also
/// re-enables an auto-disabled subscription. Returns false when nothing changed.
#[pg_extern(name = "_set_paused", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn set_paused(name: Option<&str>, paused: bool) -> bool {
    let sub = find_managed(name, if paused { "pause" } else { "resume" });
    let changed = match (paused, sub.status.as_str()) {
        (true, "active") | (false, "paused" | "disabled") => true,
        (true, "paused" | "disabled") | (false, "active") => false,
        (_, other) => invalid(format!(
            "subscription is {other} and cannot be paused or resumed"
        )),
    };
    if !changed {
        return false;
    }
    if !paused && sub.orphan {
        invalid(format!(
            "subscription \"{}\" has no owner (its owner's role was dropped), so it cannot be resumed: hand it over first with SELECT webhook.set_owner('{}', <role>), or unsubscribe it",
            name.unwrap_or_default(),
            name.unwrap_or_default().replace('\'', "''")
        ));
    }
    // Read before switching to the extension owner, who would be recorded instead.
    let pauser = caller();
    let changed = write("changing the subscription's status", |client| {
        if paused {
            let done = client.update(PAUSE, None, &[sub.id.into(), pauser.into()])?;
            return Ok(!done.is_empty());
        }
        if client.update(RESUME, None, &[sub.id.into()])?.is_empty() {
            return Ok(false);
        }
        client.update(crate::queue::UNPARK, None, &[vec![sub.id].into()])?;
        Ok(true)
    });
    if !changed {
        return false;
    }
    note_config_changed();
    if !paused {
        note_schedule_changed();
    }
    true
}

fn replay(
    sub: &Managed,
    event: Option<i64>,
    since: Option<pgrx::datum::TimestampWithTimeZone>,
    dead_only: bool,
) -> i64 {
    if sub.status == "unsubscribed" {
        invalid("the subscription is unsubscribed; subscribe again to deliver to it");
    }
    let readiness = spi(
        "checking the extension's version",
        crate::queue::extension_readiness(),
    );
    if let crate::queue::Readiness::OtherVersion(v) = readiness {
        invalid(format!(
            "pg_webhook's SQL objects in this database are version {v} and its library is {}: run ALTER EXTENSION pg_webhook UPDATE before replaying",
            env!("CARGO_PKG_VERSION")
        ));
    }
    let moved = write("replaying events", |client| {
        Ok(client
            .update(
                REPLAY,
                None,
                &[
                    sub.id.into(),
                    event.into(),
                    since.into(),
                    dead_only.into(),
                    crate::queue::current_timeline().into(),
                ],
            )?
            .len() as i64)
    });
    if moved > 0 {
        note_schedule_changed();
    }
    moved
}

/// Redelivers one finished event (delivered or dead).
#[pg_extern(name = "_replay_event", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn replay_event(event_id: Option<i64>) -> bool {
    let Some(event_id) = event_id else {
        invalid("event_id must not be NULL")
    };
    // Another owner's event is reported as missing, like one that is: the error tells nothing
    // of other subscriptions (their names, whether an event is still queued).
    forget_owner();
    let archived = as_extension_owner(|| {
        spi(
            "looking up the event",
            Spi::connect(|client| {
                first_row(client, ARCHIVED_EVENT, &[event_id.into()], |row| {
                    Ok((
                        row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::Oid::INVALID),
                        Managed {
                            id: row.get::<i32>(2)?.unwrap_or_default(),
                            status: row.get::<String>(3)?.unwrap_or_default(),
                            orphan: row.get::<bool>(4)?.unwrap_or(false),
                        },
                    ))
                })
            }),
        )
    })
    .filter(|(owner, _)| caller_acts_as(*owner));
    let Some((_, sub)) = archived else {
        let pending = as_extension_owner(|| {
            spi(
                "looking up the event",
                Spi::get_one_with_args::<pg_sys::Oid>(EVENT_PENDING, &[event_id.into()]),
            )
        });
        if pending.is_some_and(caller_acts_as) {
            invalid(format!(
                "event {event_id} is still pending: it will be delivered without a replay"
            ));
        }
        reject(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!(
                "event {event_id} does not exist among your subscriptions' events (or was purged by pg_webhook.retention)"
            ),
            None,
        )
    };
    replay(&sub, Some(event_id), None, false) == 1
}

/// Redelivers every dead event of a subscription.
#[pg_extern(name = "_replay_dead", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn replay_dead(name: Option<&str>) -> i64 {
    let sub = find_managed(name, "replay events of");
    replay(&sub, None, None, true)
}

/// Redelivers every finished event of a subscription captured since a time.
#[pg_extern(name = "_replay_since", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn replay_since(name: Option<&str>, since: Option<pgrx::datum::TimestampWithTimeZone>) -> i64 {
    let Some(since) = since else {
        invalid("since must not be NULL: give a time, such as now() - interval '1 hour'")
    };
    let sub = find_managed(name, "replay events of");
    replay(&sub, None, Some(since), false)
}

/// Replaces the signing secret; the old one keeps signing (second signature) for `overlap_ms`.
#[pg_extern(name = "_rotate_secret", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn rotate_secret(name: Option<&str>, secret: Option<&str>, overlap_ms: Option<i64>) -> String {
    let sub = find_managed(name, "rotate the secret of");
    let secret = match secret {
        None => Secret::generate(),
        Some(text) => Secret::parse(text),
    }
    .unwrap_or_else(|e| invalid(e.to_string()));
    let overlap_ms = overlap_ms.unwrap_or(0);
    if !(0..=30 * 86_400_000).contains(&overlap_ms) {
        invalid(format!(
            "overlap of {overlap_ms} ms is out of range: it must be between 0 and 30 days"
        ));
    }
    let text = secret.to_text();
    write("rotating the secret", |client| {
        client.update(
            ROTATE_SECRET,
            None,
            &[sub.id.into(), text.as_str().into(), overlap_ms.into()],
        )?;
        Ok(())
    });
    note_config_changed();
    text
}
