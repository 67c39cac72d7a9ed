//! Running user-written SQL only after checking what it would run (see `callees`): a function
//! that runs must be named in the text (schema-qualified, or from pg_catalog) or be owned by a
//! role with the privileges of the role the query runs as (a superuser, or that role).
//!
//! The query is prepared with SPI and not saved: an unsaved plan is never marked invalid by a
//! catalog change, so the analysed trees checked here are the ones that are planned and run
//! (through a cursor on that plan) — a cast created by another session in between changes
//! nothing.

use std::ffi::{c_char, CStr, CString};

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiResult, SpiTupleTable};

use crate::callees::{built_in, Callees, Names, Why};
use crate::error::{reject, type_name};

const UNTRUSTED: &str = include_str!("../sql/queries/untrusted_functions.sql");
const OPERATOR_NAME: &str = include_str!("../sql/queries/operator_name.sql");

/// pg_cast's OID (fixed in every PostgreSQL).
const CAST_RELATION: u32 = 2605;

/// A prepared query whose trees were checked; freed when SPI finishes.
pub struct Checked(pg_sys::SPIPlanPtr);

/// Prepares `query` with parameters of `types` and checks what it would run; an ERROR
/// (insufficient_privilege) names a function it may not run and why.
pub fn prepare(client: &SpiClient<'_>, query: &str, types: &[pg_sys::Oid]) -> SpiResult<Checked> {
    let text = CString::new(query)
        .unwrap_or_else(|_| crate::error::invalid("a query holds a NUL character"));
    let mut types = types.to_vec();
    // SAFETY: SPI is connected (`client`); the text and types outlive the call.
    let plan =
        unsafe { pg_sys::SPI_prepare(text.as_ptr(), types.len() as i32, types.as_mut_ptr()) };
    if plan.is_null() {
        // SAFETY: a plain read of SPI's last result.
        let status = unsafe { pg_sys::SPI_result };
        Spi::check_status(status)?;
        reject(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "pg_webhook: SPI_prepare returned no plan and no error",
            None,
        );
    }
    let checked = Checked(plan);
    // SAFETY: a plan SPI_prepare just made.
    let (callees, named) = unsafe { checked.callees() };
    // Casts are looked up again when the query runs (json functions, built-in SQL functions'
    // bodies): when that can reach a type made after initdb, no cast may be made or dropped
    // from the check until the query is done. Taking the lock also reads the latest catalog.
    // Held to the end of the (sub)transaction; queries that render only built-in scalar types
    // (most) take no lock.
    let looked_up_later = callees.rendered.iter().map(|(t, _)| t);
    if looked_up_later
        .chain(&callees.cast_to_text)
        .any(|t| !built_in_scalar(*t))
    {
        // SAFETY: a lock on a catalog that always exists.
        unsafe {
            pg_sys::LockRelationOid(
                pg_sys::Oid::from(CAST_RELATION),
                pg_sys::ShareLock as pg_sys::LOCKMODE,
            )
        };
    }
    refuse_untrusted(client, &resolve(&callees), &named)?;
    Ok(checked)
}

/// Whether `type_oid` is a type initdb made that holds no other type (not a domain, an array
/// or a composite): rendering it looks up no cast a role could make.
fn built_in_scalar(type_oid: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups of a type named by an analysed tree.
    built_in(type_oid)
        && unsafe {
            pg_sys::getBaseType(type_oid) == type_oid
                && pg_sys::get_element_type(type_oid) == pg_sys::InvalidOid
                && !pg_sys::type_is_rowtype(type_oid)
        }
}

/// Runs `query` with `args` once `prepare` has checked it, and reads its rows with `read`.
pub fn select<T>(
    client: &SpiClient<'_>,
    query: &str,
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(SpiTupleTable<'_>) -> SpiResult<T>,
) -> SpiResult<T> {
    let types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
    let checked = prepare(client, query, &types)?;
    let (mut values, nulls): (Vec<pg_sys::Datum>, Vec<c_char>) = args
        .iter()
        .map(|a| match a.datum() {
            Some(d) => (d.sans_lifetime(), b' ' as c_char),
            None => (pg_sys::Datum::from(0usize), b'n' as c_char),
        })
        .unzip();
    // As pgrx runs a query: read-only (no new snapshot) until the transaction writes.
    // SAFETY: plain reads of the transaction's state and of the plan.
    let read_only =
        unsafe { pg_sys::GetCurrentTransactionIdIfAny() == pg_sys::InvalidTransactionId };
    // SAFETY: the plan SPI_prepare made, SPI still connected.
    let before = unsafe { checked.query_lists() };
    // SAFETY: the checked plan, with one value and null flag per parameter.
    let portal = unsafe {
        pg_sys::SPI_cursor_open(
            std::ptr::null(),
            checked.0,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            read_only,
        )
    };
    // An unsaved plan is not analysed again; should that ever change, fail rather than run
    // trees nobody checked.
    // SAFETY: as above.
    if unsafe { checked.query_lists() } != before {
        reject(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "pg_webhook: a checked query was analysed again before it ran",
            None,
        );
    }
    // SAFETY: SPI_cursor_open returns a valid portal (it raises an ERROR otherwise).
    let name = unsafe { CStr::from_ptr((*portal).name) }
        .to_string_lossy()
        .into_owned();
    let mut cursor = client.find_cursor(&name)?;
    read(cursor.fetch(std::ffi::c_long::MAX)?)
}

impl Checked {
    /// The plan's sources (CachedPlanSource), in order.
    ///
    /// # Safety
    /// The plan is valid (SPI still connected).
    unsafe fn sources(&self) -> Vec<*mut pg_sys::CachedPlanSource> {
        // SAFETY: see the function contract.
        unsafe { list_items(pg_sys::SPI_plan_get_plan_sources(self.0)) }
    }

    /// Each source's analysed query list, to see whether it was replaced.
    ///
    /// # Safety
    /// As `sources`.
    unsafe fn query_lists(&self) -> Vec<*mut pg_sys::List> {
        // SAFETY: see the function contract.
        unsafe { self.sources().iter().map(|s| (**s).query_list).collect() }
    }

    /// What the plan's analysed trees would call, and the functions its text names.
    ///
    /// # Safety
    /// As `sources`.
    unsafe fn callees(&self) -> (Callees, Names) {
        let mut callees = Callees::default();
        let mut named = Names::default();
        // SAFETY: see the function contract; the sources' trees are valid.
        unsafe {
            for source in self.sources() {
                if !(*source).raw_parse_tree.is_null() {
                    named.add((*source).raw_parse_tree);
                }
                for query in list_items::<pg_sys::Query>((*source).query_list) {
                    callees.walk_query(query);
                }
            }
        }
        (callees, named)
    }
}

/// The pointers in a List (none for a null one).
///
/// # Safety
/// `list` is a List of pointers to `T`, or null.
unsafe fn list_items<T>(list: *mut pg_sys::List) -> Vec<*mut T> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: see the function contract.
    unsafe {
        (0..(*list).length)
            .map(|i| pg_sys::list_nth(list, i).cast::<T>())
            .collect()
    }
}

/// Every function the trees would run and why: the calls, plus the input and output
/// functions of the types converted through text and the casts to json of the types json
/// functions render (element types of arrays and column types of composites included).
fn resolve(callees: &Callees) -> Vec<(pg_sys::Oid, Why)> {
    let mut calls = callees.calls.clone();
    for &(type_oid, input) in &callees.through_text {
        // SAFETY: getBaseType and the I/O lookups read the catalog (an ERROR for a type
        // without them, which the analysed tree would have met already).
        for t in [type_oid, unsafe { pg_sys::getBaseType(type_oid) }] {
            if built_in(t) {
                continue;
            }
            let mut function = pg_sys::InvalidOid;
            let mut other = pg_sys::InvalidOid;
            let mut varlena = false;
            unsafe {
                if input {
                    pg_sys::getTypeInputInfo(t, &mut function, &mut other);
                } else {
                    pg_sys::getTypeOutputInfo(t, &mut function, &mut varlena);
                }
            }
            push(&mut calls, function, Why::InputOutput(t));
        }
    }
    for &type_oid in &callees.cast_to_text {
        let mut function = pg_sys::InvalidOid;
        // SAFETY: a catalog lookup (domains are taken by their base type).
        let path = unsafe {
            pg_sys::find_coercion_pathway(
                pg_sys::TEXTOID,
                type_oid,
                pg_sys::CoercionContext::COERCION_EXPLICIT,
                &mut function,
            )
        };
        if path == pg_sys::CoercionPathType::COERCION_PATH_FUNC {
            push(&mut calls, function, Why::Cast);
        }
    }
    let mut seen = Vec::new();
    for &(type_oid, typmod) in &callees.rendered {
        json_casts(type_oid, typmod, callees, &mut seen, &mut calls);
    }
    calls
}

fn push(calls: &mut Vec<(pg_sys::Oid, Why)>, function: pg_sys::Oid, why: Why) {
    if function != pg_sys::InvalidOid && !built_in(function) && !calls.contains(&(function, why)) {
        calls.push((function, why));
    }
}

/// The casts to json that rendering a value of `type_oid` may call, as json.c chooses them:
/// domains by their base type, arrays by their elements, composites by their columns (an
/// anonymous record by every column type the query reads), other types made after initdb by
/// their cast to json, if one has a function.
fn json_casts(
    type_oid: pg_sys::Oid,
    typmod: i32,
    callees: &Callees,
    seen: &mut Vec<(pg_sys::Oid, i32)>,
    calls: &mut Vec<(pg_sys::Oid, Why)>,
) {
    if seen.contains(&(type_oid, typmod)) {
        return;
    }
    seen.push((type_oid, typmod));
    // SAFETY: catalog and type cache lookups; the tuple descriptor is released below.
    unsafe {
        let base = pg_sys::getBaseType(type_oid);
        let element = pg_sys::get_element_type(base);
        if element != pg_sys::InvalidOid {
            json_casts(element, -1, callees, seen, calls);
        } else if pg_sys::type_is_rowtype(base) {
            let desc = pg_sys::lookup_rowtype_tupdesc_noerror(base, typmod, true);
            if desc.is_null() {
                for &column in &callees.value_types {
                    json_casts(column, -1, callees, seen, calls);
                }
                return;
            }
            let attributes = (*desc).attrs.as_slice((*desc).natts as usize);
            let columns: Vec<(pg_sys::Oid, i32)> = attributes
                .iter()
                .filter(|a| !a.attisdropped)
                .map(|a| (a.atttypid, a.atttypmod))
                .collect();
            if (*desc).tdrefcount >= 0 {
                pg_sys::DecrTupleDescRefCount(desc);
            }
            for (column, column_typmod) in columns {
                json_casts(column, column_typmod, callees, seen, calls);
            }
        } else if !built_in(base) {
            for target in [pg_sys::JSONOID, pg_sys::JSONBOID] {
                let mut function = pg_sys::InvalidOid;
                let path = pg_sys::find_coercion_pathway(
                    target,
                    base,
                    pg_sys::CoercionContext::COERCION_EXPLICIT,
                    &mut function,
                );
                if path == pg_sys::CoercionPathType::COERCION_PATH_FUNC {
                    push(calls, function, Why::Json(base));
                }
            }
        }
    }
}

/// Raises an ERROR for the first of `calls` that runs SQL from a string, or whose owner lacks
/// the current user's privileges unless the text names it (a function called by name, an
/// operator's function by the operator's name).
fn refuse_untrusted(
    client: &SpiClient<'_>,
    calls: &[(pg_sys::Oid, Why)],
    named: &Names,
) -> SpiResult<()> {
    if let Some((function, _)) = calls.iter().find(|(_, why)| *why == Why::RunsSql) {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "the expression would run function {}, which runs SQL analysed only when it runs (a query in a string, or a table's or a view's), so what that SQL would run cannot be checked: such functions do not run in a filter or payload",
                crate::error::function_name(*function)
            ),
            None,
        );
    }
    let mut functions: Vec<pg_sys::Oid> = calls.iter().map(|(f, _)| *f).collect();
    if functions.is_empty() {
        return Ok(());
    }
    functions.sort_by_key(|f| f.to_u32());
    functions.dedup();
    // SAFETY: a plain read of the current user.
    let runner = unsafe { pg_sys::GetUserId() };
    let rows = client.select(UNTRUSTED, None, &[functions.into(), runner.into()])?;
    for row in rows {
        let function: pg_sys::Oid = row.get(1)?.unwrap_or_default();
        let signature: String = row.get(2)?.unwrap_or_default();
        let schema: String = row.get(3)?.unwrap_or_default();
        let proname: String = row.get(4)?.unwrap_or_default();
        let owner: String = row.get(5)?.unwrap_or_default();
        for (_, why) in calls.iter().filter(|(f, _)| *f == function) {
            let exempt = match why {
                Why::Call => named.functions.contains(&(schema.clone(), proname.clone())),
                Why::Operator(opno) => {
                    let operator = client
                        .select(OPERATOR_NAME, Some(1), &[(*opno).into()])?
                        .first()
                        .get_two::<String, String>()?;
                    match operator {
                        (Some(schema), Some(name)) => named.operators.contains(&(schema, name)),
                        _ => false,
                    }
                }
                _ => false,
            };
            if !exempt {
                refuse(&signature, &owner, *why);
            }
        }
    }
    Ok(())
}

fn refuse(signature: &str, owner: &str, why: Why) -> ! {
    // SAFETY: a plain read of the current user.
    let runner = crate::privilege::role_name(unsafe { pg_sys::GetUserId() });
    let reason = match why {
        Why::Call => "the expression does not name it (it comes from a view or a policy the expression reads, or from a conversion written as a function call)".to_string(),
        Why::Cast => "it is a cast's function (a cast written x::type, or an implicit one, which a type's owner may create at any time)".to_string(),
        Why::InputOutput(t) => format!("it is the input or output function of type {}", type_name(t)),
        Why::Json(t) => format!("it is type {}'s cast to json, which a json function calls to render its values", type_name(t)),
        Why::Operator(opno) => format!("it is the function of operator {}, which the expression does not name (it comes from a view or a policy the expression reads)", operator_name(opno)),
        Why::RunsSql => "it runs SQL that cannot be checked beforehand".to_string(),
    };
    reject(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "the expression would run function {signature}, owned by role {owner}, with the rights of role {runner}: {reason}; only functions the expression names, or whose owner has the rights of role {runner}, run there (call it by name, schema-qualified, if you trust role {owner}; pg_catalog.format('%s', value) renders a value as text without a cast)"
        ),
        None,
    )
}

/// An operator's name with its argument types, for messages.
fn operator_name(opno: pg_sys::Oid) -> String {
    // SAFETY: format_operator returns a palloc'd string for any OID.
    unsafe {
        CStr::from_ptr(pg_sys::format_operator(opno))
            .to_string_lossy()
            .into_owned()
    }
}
