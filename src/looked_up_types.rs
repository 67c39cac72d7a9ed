//! Types whose code PostgreSQL looks up as a query runs, not when it is analysed: a json
//! function renders a value of a type made after initdb through that type's cast to json,
//! if it has one then; the built-in SQL functions behind `text || value` and
//! `quote_literal(value)` cast their argument to text when they are planned; the planner and
//! range functions call a range type's `subtype_diff` and `canonical`. A cast committed between
//! `checked_sql`'s check and the run would be used unchecked (no lock on pg_cast stops it:
//! `CREATE CAST` holds none until it commits), so such types are judged by their owner, the
//! only role (with superusers) who may make casts of them to json or text: the owner must
//! have the privileges of the role the query runs as. So are domains a value is checked
//! against as the query runs: their owner may add a CHECK constraint at any time, which takes
//! no lock a running query holds. A range type's support functions never change; they are
//! checked as calls.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult};

use crate::callees::{built_in, Callees, Why};
use crate::catalog_cache::{oid, with_row};
use crate::error::{reject, type_name};
use crate::named_in_text::Names;

const UNTRUSTED_TYPES: &str = include_str!("../sql/queries/untrusted_types.sql");

/// Raises an ERROR when the query renders as json, or casts to text in a built-in SQL
/// function, a value of a type whose owner lacks the current user's privileges (arrays by
/// their elements, composites and records by their columns, domains by their base types), or
/// renders a value whose type is known only as it runs (`anyarray`).
pub fn refuse_untrusted(client: &SpiClient<'_>, callees: &Callees) -> SpiResult<()> {
    let mut rendered = Vec::new();
    let mut seen = Vec::new();
    for &(type_oid, typmod) in &callees.rendered {
        scalars(type_oid, typmod, callees, &mut seen, &mut rendered);
    }
    let mut cast = Vec::new();
    for &type_oid in &callees.cast_to_text {
        // SAFETY: a catalog lookup of a type named by an analysed tree.
        let base = unsafe { pg_sys::getBaseType(type_oid) };
        if !built_in(base) {
            cast.push(base);
        }
    }
    for (types, how) in [
        (rendered, "render as json"),
        (
            cast,
            "cast to text (in a built-in function such as text || value or quote_literal)",
        ),
    ] {
        if let Some(any) = types.iter().find(|t| polymorphic_array(**t)) {
            refuse_unknown(*any, how);
        }
        let types: Vec<pg_sys::Oid> = types.into_iter().filter(|t| !built_in(*t)).collect();
        if types.is_empty() {
            continue;
        }
        // SAFETY: a plain read of the current user.
        let runner = unsafe { pg_sys::GetUserId() };
        let rows = client.select(
            UNTRUSTED_TYPES,
            None,
            &[types.clone().into(), runner.into()],
        )?;
        let mut seen = Vec::new();
        for row in rows {
            seen.push(row.get::<pg_sys::Oid>(1)?.unwrap_or_default());
            if row.get::<bool>(4)? != Some(true) {
                let name: String = row.get(2)?.unwrap_or_default();
                let owner: String = row.get(3)?.unwrap_or_default();
                refuse_type(&name, &owner, how);
            }
        }
        // Fail closed: a type made after the statement's snapshot (see `checked_sql`).
        if let Some(unseen) = types.iter().find(|t| !seen.contains(t)) {
            refuse_too_new("type", unseen.to_u32());
        }
    }
    Ok(())
}

/// The support functions of the range and multirange types the query computes or reads
/// (domains by their base types), as calls to check. Read from the type cache, as the planner
/// and range functions read them — not in the statement's snapshot, which may predate the type.
pub fn range_functions(callees: &Callees) -> Vec<(pg_sys::Oid, Why)> {
    let mut functions = Vec::new();
    for &value in &callees.value_types {
        // SAFETY: syscache and type cache reads of a type the analysis used (an ERROR for
        // one dropped since, which the run would meet too).
        unsafe {
            let mut range = pg_sys::getBaseType(value);
            if built_in(range) {
                continue;
            }
            if pg_sys::get_typtype(range) as u8 == pg_sys::TYPTYPE_MULTIRANGE {
                range = pg_sys::get_multirange_range(range);
            }
            if range == pg_sys::InvalidOid
                || pg_sys::get_typtype(range) as u8 != pg_sys::TYPTYPE_RANGE
            {
                continue;
            }
            let entry = pg_sys::lookup_type_cache(range, pg_sys::TYPECACHE_RANGE_INFO as i32);
            for function in [
                (*entry).rng_subdiff_finfo.fn_oid,
                (*entry).rng_canonical_finfo.fn_oid,
            ] {
                let call = (function, Why::RangeSupport(range));
                if !built_in(function) && !functions.contains(&call) {
                    functions.push(call);
                }
            }
        }
    }
    functions
}

/// Raises an ERROR when the query would check a value against a domain whose owner lacks the
/// current user's privileges, unless the text names that domain (`x::schema.d`). The domains
/// are those of the types the query makes values into (`Callees::made_into`) and those within
/// them — a domain's base domains, array elements, composite columns, range subtypes — read
/// from the catalog caches, as the run reads them.
///
/// Returns the owners of the domains it let through because the text names them.
pub fn refuse_untrusted_domains(callees: &Callees, named: &Names) -> Vec<pg_sys::Oid> {
    let mut named_owners = Vec::new();
    let mut seen = Vec::new();
    let mut domains = Vec::new();
    for &t in &callees.made_into {
        domains_within(t, callees, &mut seen, &mut domains);
    }
    // SAFETY: a plain read of the current user.
    let runner = unsafe { pg_sys::GetUserId() };
    for domain in domains {
        // A domain dropped since runs nothing (the run fails on it).
        let Some(row) = type_row(domain) else {
            continue;
        };
        // SAFETY: a catalog read of two role OIDs.
        if unsafe { pg_sys::has_privs_of_role(row.owner, runner) } {
            continue;
        }
        if named.types.contains(&(row.schema, row.name)) {
            named_owners.push(row.owner);
        } else {
            let owner = crate::privilege::role_name(row.owner);
            let runner = crate::privilege::role_name(runner);
            reject(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!(
                    "the expression would check a value against domain {}, owned by role {owner}, with the rights of role {runner}: PostgreSQL reads a domain's constraints as it runs, and role {owner} may add a CHECK constraint calling any function at any time, so its code would run there; use the domain's base type instead (compare NEW.col as it is, or cast to the base type), or name the domain schema-qualified (x::schema.domain) if you trust its owner's code",
                    type_name(domain)
                ),
                None,
            );
        }
    }
    named_owners
}

/// Adds to `out` the user-made domains a value of type `t` is checked against when it is made.
/// An anonymous record (a populate function's target given as `NEW`, say) is made with
/// whatever row type it turns out to have: every type the query computes or declares.
fn domains_within(
    t: pg_sys::Oid,
    callees: &Callees,
    seen: &mut Vec<pg_sys::Oid>,
    out: &mut Vec<pg_sys::Oid>,
) {
    if t == pg_sys::RECORDOID && !seen.contains(&t) {
        seen.push(t);
        for &value in &callees.value_types {
            domains_within(value, callees, seen, out);
        }
        return;
    }
    if t == pg_sys::InvalidOid || built_in(t) || seen.contains(&t) {
        return;
    }
    seen.push(t);
    // SAFETY: syscache and type cache reads of a type the analysis used.
    let inner = unsafe {
        match pg_sys::get_typtype(t) as u8 {
            pg_sys::TYPTYPE_DOMAIN => {
                out.push(t);
                type_row(t).map(|row| row.base).into_iter().collect()
            }
            pg_sys::TYPTYPE_COMPOSITE => columns(t, -1)
                .unwrap_or_default()
                .into_iter()
                .map(|(column, _)| column)
                .collect(),
            pg_sys::TYPTYPE_RANGE => vec![pg_sys::get_range_subtype(t)],
            pg_sys::TYPTYPE_MULTIRANGE => vec![pg_sys::get_multirange_range(t)],
            _ => vec![pg_sys::get_element_type(t)],
        }
    };
    for t in inner {
        domains_within(t, callees, seen, out);
    }
}

/// What a domain check needs of a pg_type row, read from the catalog cache.
struct TypeRow {
    owner: pg_sys::Oid,
    /// The type a domain is over (InvalidOid for other types).
    base: pg_sys::Oid,
    schema: String,
    name: String,
}

fn type_row(t: pg_sys::Oid) -> Option<TypeRow> {
    let text = |p: *const std::ffi::c_char| {
        // SAFETY: a NUL-terminated string, or null.
        (!p.is_null()).then(|| {
            unsafe { std::ffi::CStr::from_ptr(p) }
                .to_string_lossy()
                .into_owned()
        })
    };
    with_row(pg_sys::SysCacheIdentifier::TYPEOID, t, |attribute| {
        let namespace = oid(attribute(pg_sys::Anum_pg_type_typnamespace));
        // typname is a NameData, NUL-terminated.
        let name = attribute(pg_sys::Anum_pg_type_typname).map_or(std::ptr::null_mut(), |d| {
            d.cast_mut_ptr::<std::ffi::c_char>()
        });
        TypeRow {
            owner: oid(attribute(pg_sys::Anum_pg_type_typowner)),
            base: oid(attribute(pg_sys::Anum_pg_type_typbasetype)),
            // SAFETY: a syscache read (null for a schema that is gone).
            schema: text(unsafe { pg_sys::get_namespace_name(namespace) }).unwrap_or_default(),
            name: text(name).unwrap_or_default(),
        }
    })
}

/// The (type, typmod) of each live column of composite type `type_oid`, from the type cache;
/// None when there is no such row type (an anonymous record's, for one).
///
/// The type's relation is locked first (ACCESS SHARE, to the end of the transaction), so the
/// columns read here are those the query meets when it runs: `ALTER TYPE … ADD ATTRIBUTE`
/// waits for the lock, and one that committed before it is seen once it is taken.
fn columns(type_oid: pg_sys::Oid, typmod: i32) -> Option<Vec<(pg_sys::Oid, i32)>> {
    // SAFETY: a lock on a relation that may be gone (a no-op then), and a type cache lookup;
    // the tuple descriptor is released below.
    unsafe {
        let relation = pg_sys::get_typ_typrelid(type_oid);
        if relation != pg_sys::InvalidOid {
            pg_sys::LockRelationOid(relation, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        }
        let desc = pg_sys::lookup_rowtype_tupdesc_noerror(type_oid, typmod, true);
        if desc.is_null() {
            return None;
        }
        let attributes = (*desc).attrs.as_slice((*desc).natts as usize);
        let columns = attributes
            .iter()
            .filter(|a| !a.attisdropped)
            .map(|a| (a.atttypid, a.atttypmod))
            .collect();
        if (*desc).tdrefcount >= 0 {
            pg_sys::DecrTupleDescRefCount(desc);
        }
        Some(columns)
    }
}

fn polymorphic_array(type_oid: pg_sys::Oid) -> bool {
    type_oid == pg_sys::ANYARRAYOID || type_oid == pg_sys::ANYCOMPATIBLEARRAYOID
}

/// The scalar types rendering a value of `type_oid` reaches, as json.c walks them: domains by
/// their base type, arrays by their elements, composites by their columns (an anonymous
/// record by every type the query computes).
fn scalars(
    type_oid: pg_sys::Oid,
    typmod: i32,
    callees: &Callees,
    seen: &mut Vec<(pg_sys::Oid, i32)>,
    out: &mut Vec<pg_sys::Oid>,
) {
    if seen.contains(&(type_oid, typmod)) {
        return;
    }
    seen.push((type_oid, typmod));
    // SAFETY: catalog and type cache lookups.
    unsafe {
        let base = pg_sys::getBaseType(type_oid);
        let element = pg_sys::get_element_type(base);
        if element != pg_sys::InvalidOid {
            scalars(element, -1, callees, seen, out);
        } else if pg_sys::type_is_rowtype(base) {
            let Some(columns) = columns(base, typmod) else {
                for &value in &callees.value_types {
                    scalars(value, -1, callees, seen, out);
                }
                return;
            };
            for (column, column_typmod) in columns {
                scalars(column, column_typmod, callees, seen, out);
            }
        } else if !out.contains(&base) {
            out.push(base);
        }
    }
}

fn refuse_type(name: &str, owner: &str, how: &str) -> ! {
    // SAFETY: a plain read of the current user.
    let runner = crate::privilege::role_name(unsafe { pg_sys::GetUserId() });
    reject(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "the expression would {how} a value of type {name}, owned by role {owner}, with the rights of role {runner}: PostgreSQL looks up that type's cast as it runs, and role {owner} may make one at any time, so its code would run there; convert the value where the expression says how, e.g. NEW.col::text or pg_catalog.format('%s', NEW.col), or call a function you trust by name"
        ),
        None,
    )
}

fn refuse_unknown(type_oid: pg_sys::Oid, how: &str) -> ! {
    reject(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "the expression would {how} a value of type {}, whose actual type is known only as it runs, so whose casts cannot be checked beforehand: convert it first, e.g. with ::text",
            type_name(type_oid)
        ),
        None,
    )
}

/// Refuses a `what` (function, type) with OID `oid` that the analysis saw but the statement's
/// snapshot does not: made since, so not yet judged. A serialization failure: the same
/// statement in a new transaction (a new snapshot) is judged in full, so clients that retry
/// those (and backfill chunks) get past it.
pub fn refuse_too_new(what: &str, oid: u32) -> ! {
    reject(
        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
        format!(
            "the expression would use a {what} (OID {oid}) made after this transaction's snapshot, which cannot be checked in it: run the transaction again"
        ),
        None,
    )
}
