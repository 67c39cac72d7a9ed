//! Handing a subscription whose owner's role was dropped to another role. Its owner's identity
//! decides what its filter, payload and callback run as and whose access to the table the
//! worker checks; nothing stops `DROP ROLE` of it (a subscription is not a catalog object), so
//! it was left disabled for good, its events parked and still queueing.
//!
//! Only for such orphans, and so only by a superuser: a live owner could redefine the functions
//! its filter, payload or callback call (a role cannot be dropped while it owns any), and they
//! would run as the new owner. A live owner's subscription changes hands by being made again
//! by the new owner, who then chooses what it calls. The new owner must pass every check
//! `subscribe()` makes of a subscriber, with the subscription's settings, and own its callback
//! (or a superuser must); one with SQL of its former owner's (a filter, a payload) does not
//! change hands (it would run as the new owner, and no reading of the text tells everything it
//! runs);
//! the checks run rolled back and read-only, as the new owner.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::{check_events, check_may_subscribe, check_target, delivery, order_key, shape};
use crate::error::{reject, spi, undone};
use crate::manage::find_managed;
use crate::privilege::{as_extension_owner, as_role, read_only, role_name};
use crate::sql::first_row;

const OWNER_CHANGE: &str = include_str!("../../sql/queries/owner_change.sql");
const SET_OWNER: &str = include_str!("../../sql/queries/set_owner.sql");

/// A subscription as its new owner must be able to take it over.
struct Settings {
    target: pg_sys::Oid,
    events: Vec<Option<String>>,
    filter: Option<String>,
    columns: Option<Vec<Option<String>>>,
    exclude_columns: Option<Vec<Option<String>>>,
    skip_unchanged: bool,
    payload: Option<String>,
    order_key: Option<Vec<String>>,
    callback: Option<pg_sys::Oid>,
    owner: pg_sys::Oid,
    owner_exists: bool,
    callback_owner: Option<pg_sys::Oid>,
    /// Its callback's OID was read in another cluster or copy, not bound again here yet.
    callback_unbound: bool,
    /// Its callback's signature.
    signature: Option<String>,
    /// A backfill of it is running with a filter.
    backfill_filter: bool,
}

/// Makes `new_owner` the owner of subscription `name`, whose owner's role was dropped.
#[pg_extern(name = "_set_owner", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn set_owner(name: Option<&str>, new_owner: Option<pg_sys::Oid>) -> bool {
    let sub = find_managed(name, "change the owner of");
    let name = name.unwrap_or_default();
    let Some(new_owner) = new_owner.filter(|r| *r != pg_sys::Oid::INVALID) else {
        crate::error::invalid("new_owner must not be NULL: give the role to own the subscription")
    };
    let s = as_extension_owner(|| {
        spi(
            "reading the subscription's settings",
            Spi::connect(|client| first_row(client, OWNER_CHANGE, &[sub.id.into()], read)),
        )
    })
    .unwrap_or_else(|| crate::error::invalid(format!("subscription \"{name}\" vanished")));
    if s.owner_exists {
        reject(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("subscription \"{name}\" still has its owner: only a subscription whose owner's role was dropped changes hands"),
            Some("the new owner subscribes again (webhook.subscribe), choosing what its filter, payload and callback call; then unsubscribe this one"),
        );
    }
    if s.callback_unbound {
        reject(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("subscription \"{name}\" has a callback not bound to its function in this database yet (it was upgraded with pg_upgrade or restored)"),
            Some("the delivery worker binds it within seconds of starting; try again then"),
        );
    }
    // Its function dropped, or missing from the restore or upgrade it came from (bound to no
    // function: OID 0): no owner to check, nothing the new owner could be allowed to run.
    if let (Some(_), None) = (s.callback, s.callback_owner) {
        reject(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "subscription \"{name}\" cannot go to role {}: its callback function {} does not exist in this database (dropped, or not restored with the subscription)",
                role_name(new_owner),
                s.signature.as_deref().unwrap_or("(unknown)")
            ),
            Some("the new owner subscribes again (webhook.subscribe) with a callback of its own. This one's queued events stay parked and are never sent, as nobody's: unsubscribe it with discard_queued => true to remove them"),
        );
    }
    // SAFETY: a catalog read.
    let superuser = |role| unsafe { pg_sys::superuser_arg(role) };
    if let (Some(callback), Some(owner)) = (s.callback, s.callback_owner) {
        if owner != new_owner && !superuser(owner) {
            reject(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("subscription \"{name}\" cannot go to role {}: its callback (function {}) belongs to another role, whose changes to it would run as the new owner", role_name(new_owner), callback.to_u32()),
                Some("give the callback function to the new owner first (ALTER FUNCTION ... OWNER TO)"),
            );
        }
    }
    // A filter or payload runs as its owner at capture: text its former owner wrote, and
    // whatever that calls or names in a string for a function to run (query_to_xml). No reading
    // of the text tells all of it. (Columns, exclude_columns and skip_unchanged are names and a
    // flag: the row images they shape are rendered by capture, not as the owner.)
    let shaped = [
        ("a filter", s.filter.is_some()),
        ("a payload", s.payload.is_some()),
    ];
    if let Some((what, _)) = shaped.iter().find(|(_, set)| *set) {
        reject(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("subscription \"{name}\" cannot go to role {}: it has {what}, so its capture runs SQL its former owner chose, which would run as the new owner", role_name(new_owner)),
            Some("the new owner subscribes again (webhook.subscribe), with SQL of their own. This one's queued events stay parked and are never sent (those captured since its owner's role was dropped are whole rows its filter never saw): unsubscribe it with discard_queued => true to remove them"),
        );
    }
    // So does a running backfill's filter, in each chunk.
    if s.backfill_filter {
        let quoted = name.replace('\'', "''");
        reject(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("subscription \"{name}\" cannot go to role {}: a backfill of it is running with a filter, SQL chosen before that its chunks would run as the new owner", role_name(new_owner)),
            Some(&format!("cancel the backfill first (SELECT webhook.cancel_backfill('{quoted}')); the new owner may backfill again, with a filter of their own")),
        );
    }
    // Checked as the new owner, as subscribe() checks its caller; nothing the checks run is
    // kept.
    undone(|| {
        read_only(|| {
            as_role(new_owner, || {
                check_may_subscribe();
                let table = check_target(Some(s.target));
                let events = check_events(Some(s.events.clone()));
                shape::check_shape(
                    table.oid,
                    &table.qualified,
                    &events,
                    s.filter.as_deref(),
                    s.columns.clone(),
                    s.exclude_columns.clone(),
                    s.skip_unchanged,
                    s.payload.as_deref(),
                );
                if let Some(key) = &s.order_key {
                    order_key::check(table.oid, &table.qualified, key);
                }
                if let Some(callback) = s.callback {
                    delivery::check_callback(callback);
                }
            })
        })
    });
    as_extension_owner(|| {
        spi(
            "changing the owner",
            Spi::connect_mut(|client| {
                let args = [sub.id.into(), new_owner.into(), s.owner.into()];
                if client.update(SET_OWNER, None, &args)?.is_empty() {
                    crate::error::invalid(format!(
                        "subscription \"{name}\" changed hands meanwhile; look again"
                    ));
                }
                Ok(())
            }),
        )
    });
    // Capture keeps each subscription's owner per session: every session reads it again.
    // SAFETY: queues a relation cache invalidation, sent at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(s.target) };
    crate::wake::note_config_changed();
    true
}

fn read(row: &pgrx::spi::SpiTupleTable<'_>) -> pgrx::spi::SpiResult<Settings> {
    Ok(Settings {
        target: row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::Oid::INVALID),
        events: row.get(2)?.unwrap_or_default(),
        filter: row.get(3)?,
        columns: row.get(4)?,
        exclude_columns: row.get(5)?,
        skip_unchanged: row.get(6)?.unwrap_or(false),
        payload: row.get(7)?,
        order_key: row.get(8)?,
        callback: row.get::<pg_sys::Oid>(9)?,
        owner: row.get::<pg_sys::Oid>(10)?.unwrap_or(pg_sys::Oid::INVALID),
        owner_exists: row.get(11)?.unwrap_or(true),
        callback_owner: row.get::<pg_sys::Oid>(12)?,
        callback_unbound: row.get(13)?.unwrap_or(false),
        signature: row.get(14)?,
        backfill_filter: row.get(15)?.unwrap_or(false),
    })
}
