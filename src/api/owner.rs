//! Handing a subscription to another role. Its owner's identity decides what its filter,
//! payload and callback run as and whose access to the table the worker checks, so a role that
//! leaves (`DROP ROLE`, which nothing stops: a subscription is not a catalog object) would leave
//! it disabled for good, its events parked and still queueing. The new owner must pass every
//! check `subscribe()` makes of a subscriber, with the subscription's settings as they are.

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;

use super::{check_events, check_may_subscribe, check_target, delivery, order_key, shape};
use crate::error::{reject, spi};
use crate::manage::find_managed;
use crate::privilege::{as_extension_owner, as_role, caller_acts_as};
use crate::sql::first_row;

const OWNER_CHANGE: &str = include_str!("../../sql/queries/owner_change.sql");
const SET_OWNER: &str = include_str!("../../sql/queries/set_owner.sql");

/// The settings of a subscription that its owner must be allowed.
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
}

/// Makes `new_owner` the owner of subscription `name`. The caller must be able to act as both
/// the current owner (a superuser, once that role is gone) and the new one.
#[pg_extern(name = "_set_owner", volatile)]
#[search_path(pg_catalog, pg_temp)]
fn set_owner(name: Option<&str>, new_owner: Option<pg_sys::Oid>) -> bool {
    let sub = find_managed(name, "change the owner of");
    let Some(new_owner) = new_owner.filter(|r| *r != pg_sys::Oid::INVALID) else {
        crate::error::invalid("new_owner must not be NULL: give the role to own the subscription")
    };
    if !caller_acts_as(new_owner) {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied to hand subscription \"{}\" to role {}: you must have the privileges of that role",
                name.unwrap_or_default(),
                role_name(new_owner)
            ),
            Some("a superuser, or a member of the new owner role, may do it"),
        );
    }
    let settings = as_extension_owner(|| {
        spi(
            "reading the subscription's settings",
            Spi::connect(|client| first_row(client, OWNER_CHANGE, &[sub.id.into()], read)),
        )
    });
    let Some(s) = settings else {
        crate::error::invalid(format!(
            "subscription \"{}\" vanished",
            name.unwrap_or_default()
        ))
    };
    // Checked as the new owner, as subscribe() checks its caller.
    as_role(new_owner, || {
        check_may_subscribe();
        let table = check_target(Some(s.target));
        let events = check_events(Some(s.events));
        shape::check_shape(
            table.oid,
            &table.qualified,
            &events,
            s.filter.as_deref(),
            s.columns,
            s.exclude_columns,
            s.skip_unchanged,
            s.payload.as_deref(),
        );
        if let Some(key) = &s.order_key {
            order_key::check(table.oid, &table.qualified, key);
        }
        if let Some(callback) = s.callback {
            delivery::check_callback(callback);
        }
    });
    as_extension_owner(|| {
        spi(
            "changing the owner",
            Spi::connect_mut(|client| {
                client.update(SET_OWNER, None, &[sub.id.into(), new_owner.into()])?;
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
    })
}

fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup; `true`: NULL when there is no such role.
    let name = unsafe { pg_sys::GetUserNameFromId(role, true) };
    if name.is_null() {
        format!("with OID {}", role.to_u32())
    } else {
        // SAFETY: a NUL-terminated name from the catalog.
        unsafe { std::ffi::CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    }
}
