//! Running user-written SQL only after checking what it would run (see `callees`): a function
//! that runs must be named in the text (schema-qualified, or from pg_catalog) or be owned by a
//! role with the privileges of the role the query runs as (a superuser, or that role).
//!
//! The query is prepared with SPI and not saved: an unsaved plan is never marked invalid by a
//! catalog change, so the analysed trees checked here are the ones that are planned and run
//! (through a cursor on that plan) — a cast created by another session in between changes
//! nothing.

use std::ffi::{c_char, c_long, CStr, CString};

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiError, SpiResult, SpiTupleTable};

use crate::analysis_guard::{guarded, Phase};
use crate::callees::{built_in, list_items, Callees, Why};
use crate::error::{operator_name, reject, type_name};
use crate::named_in_text::Names;

const UNTRUSTED: &str = include_str!("../sql/queries/untrusted_functions.sql");
const OPERATOR_NAME: &str = include_str!("../sql/queries/operator_name.sql");

/// A prepared query whose trees were checked; freed when SPI finishes.
pub struct Checked {
    plan: pg_sys::SPIPlanPtr,
    /// The owners of the code the text names, which the plan may run (see `analysis_guard`).
    named_owners: Vec<pg_sys::Oid>,
}

/// Prepares `query` with parameters of `types` and checks what it would run; an ERROR
/// (insufficient_privilege) names a function it may not run and why.
///
/// `trigger`: the trigger call whose transition tables the query reads, which the caller has
/// registered with SPI (`SPI_register_trigger_data`).
pub fn prepare(
    client: &SpiClient<'_>,
    query: &str,
    types: &[pg_sys::Oid],
    trigger: Option<&pg_sys::TriggerData>,
) -> SpiResult<Checked> {
    let text = CString::new(query)
        .unwrap_or_else(|_| crate::error::invalid("a query holds a NUL character"));
    let mut types = types.to_vec();
    crate::literals::refuse_untrusted_literal_domains(&text, &types, trigger);
    // Analysis may run an input function (see `analysis_guard`).
    // SAFETY: SPI is connected (`client`); the text and types outlive the call.
    let plan = crate::analysis_guard::analysing(|| unsafe {
        pg_sys::SPI_prepare(text.as_ptr(), types.len() as i32, types.as_mut_ptr())
    });
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
    let mut checked = Checked {
        plan,
        named_owners: Vec::new(),
    };
    // SAFETY: a plan SPI_prepare just made.
    let (callees, named) = unsafe { checked.callees() };
    if let Some(&(shell, used)) = callees.shells.first() {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "operator {}, a commutator or negator of operator {}, which the expression uses, is a shell (declared, not defined): its owner may define it with any function between this check and the run, and the planner may run it in that operator's place; define it, or use an operator without it",
                operator_name(shell),
                operator_name(used)
            ),
            None,
        );
    }
    // Types whose casts (or range functions) are looked up as the query runs.
    crate::looked_up_types::refuse_untrusted(client, &callees)?;
    let domain_owners = crate::looked_up_types::refuse_untrusted_domains(&callees, &named);
    let mut calls = resolve(&callees);
    calls.extend(crate::looked_up_types::range_functions(&callees));
    checked.named_owners = refuse_untrusted(client, &calls, &named)?;
    checked.named_owners.extend(domain_owners);
    crate::relation_code::refuse_untrusted(&callees.relations);
    Ok(checked)
}

/// Runs `query` with `args` once `prepare` has checked it, and reads its rows with `read`.
pub fn select<T>(
    client: &SpiClient<'_>,
    query: &str,
    args: &[DatumWithOid<'_>],
    trigger: Option<&pg_sys::TriggerData>,
    read: impl FnOnce(SpiTupleTable<'_>) -> SpiResult<T>,
) -> SpiResult<T> {
    let mut read = Some(read);
    let mut result = None;
    select_batches(client, query, args, trigger, c_long::MAX, |rows| {
        if let Some(read) = read.take() {
            result = Some(read(rows)?);
        }
        Ok(false)
    })?;
    // The first batch is always read (empty if the query returns no rows).
    result.ok_or(SpiError::NoTupleTable)
}

/// `select`, fetching `batch` rows at a time: `read` gets each batch, until it returns false
/// or a batch comes back short (the query's last). Rows not fetched are never computed. Every
/// batch's rows stay valid until SPI finishes.
pub fn select_batches(
    client: &SpiClient<'_>,
    query: &str,
    args: &[DatumWithOid<'_>],
    trigger: Option<&pg_sys::TriggerData>,
    batch: c_long,
    mut read: impl FnMut(SpiTupleTable<'_>) -> SpiResult<bool>,
) -> SpiResult<()> {
    let types: Vec<pg_sys::Oid> = args.iter().map(|a| a.oid()).collect();
    let checked = prepare(client, query, &types, trigger)?;
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
    // Planned and run under the guard: nothing the check did not see runs (an operator's
    // commutator defined meanwhile, say).
    let owners = &checked.named_owners;
    // SAFETY: the checked plan, with one value and null flag per parameter.
    let portal = guarded(Phase::Running, owners, || unsafe {
        pg_sys::SPI_cursor_open(
            std::ptr::null(),
            checked.plan,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            read_only,
        )
    });
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
    loop {
        let rows = guarded(Phase::Running, owners, || cursor.fetch(batch))?;
        let last = (rows.len() as c_long) < batch;
        if !read(rows)? || last {
            return Ok(());
        }
    }
}

impl Checked {
    /// The plan's sources (CachedPlanSource), in order.
    ///
    /// # Safety
    /// The plan is valid (SPI still connected).
    unsafe fn sources(&self) -> Vec<*mut pg_sys::CachedPlanSource> {
        // SAFETY: see the function contract.
        unsafe { list_items(pg_sys::SPI_plan_get_plan_sources(self.plan)) }
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

/// Every function the trees would run and why: the calls, plus the input and output
/// functions of the types converted through text.
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
    calls
}

fn push(calls: &mut Vec<(pg_sys::Oid, Why)>, function: pg_sys::Oid, why: Why) {
    if function != pg_sys::InvalidOid && !built_in(function) && !calls.contains(&(function, why)) {
        calls.push((function, why));
    }
}

/// Raises an ERROR for the first of `calls` that runs SQL from a string, or whose owner lacks
/// the current user's privileges unless the text names it (a function called by name, an
/// operator's function by the operator's name).
///
/// Returns the owners of the functions it let run because the text names them.
fn refuse_untrusted(
    client: &SpiClient<'_>,
    calls: &[(pg_sys::Oid, Why)],
    named: &Names,
) -> SpiResult<Vec<pg_sys::Oid>> {
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
    if let Some((function, _)) = calls.iter().find(|(_, why)| *why == Why::TypeFromArgument) {
        reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "the expression would call {}, which reads text as a type given as an argument, so which domains' constraints and which input functions it runs cannot be checked beforehand: cast the text instead, e.g. '(1,x)'::schema.type",
                crate::error::function_name(*function)
            ),
            None,
        );
    }
    let mut functions: Vec<pg_sys::Oid> = calls.iter().map(|(f, _)| *f).collect();
    let mut named_owners = Vec::new();
    if functions.is_empty() {
        return Ok(named_owners);
    }
    functions.sort_by_key(|f| f.to_u32());
    functions.dedup();
    // SAFETY: a plain read of the current user.
    let runner = unsafe { pg_sys::GetUserId() };
    let rows = client.select(UNTRUSTED, None, &[functions.clone().into(), runner.into()])?;
    let mut seen = Vec::new();
    for row in rows {
        let function: pg_sys::Oid = row.get(1)?.unwrap_or_default();
        seen.push(function);
        let signature: String = row.get(2)?.unwrap_or_default();
        let trusted = row.get::<bool>(6)? == Some(true);
        if !trusted {
            let schema: String = row.get(3)?.unwrap_or_default();
            let proname: String = row.get(4)?.unwrap_or_default();
            let owner: String = row.get(5)?.unwrap_or_default();
            for (_, why) in calls.iter().filter(|(f, _)| *f == function) {
                let exempt = match why {
                    Why::Call => named.functions.contains(&(schema.clone(), proname.clone())),
                    Why::Operator(opno) | Why::Swapped(opno, _) => {
                        operator_named(client, named, *opno)?
                    }
                    _ => false,
                };
                if !exempt {
                    refuse(&signature, &owner, *why);
                }
            }
        }
        // Named or trusted, a procedural function is refused all the same.
        if let Some(language) = row.get::<String>(8)? {
            refuse_procedural(&signature, &language);
        }
        if !trusted {
            named_owners.push(row.get::<pg_sys::Oid>(7)?.unwrap_or_default());
        }
    }
    // Fail closed: the analysis saw the latest catalog, the query above the statement's
    // snapshot, which may predate a function made since.
    if let Some(unseen) = functions.iter().find(|f| !seen.contains(f)) {
        crate::looked_up_types::refuse_too_new("function", unseen.to_u32());
    }
    Ok(named_owners)
}

/// Whether the text names operator `opno`, schema-qualified (`OPERATOR(schema.op)`).
fn operator_named(client: &SpiClient<'_>, named: &Names, opno: pg_sys::Oid) -> SpiResult<bool> {
    let operator = client
        .select(OPERATOR_NAME, Some(1), &[opno.into()])?
        .first()
        .get_two::<String, String>()?;
    Ok(match operator {
        (Some(schema), Some(name)) => named.operators.contains(&(schema, name)),
        _ => false,
    })
}

/// A function in a procedural language: PL/pgSQL (and the like) keeps, for the rest of the
/// transaction, the casts and expressions it compiled — in caches of the session, whoever the
/// function runs as — and a writer can have them compiled earlier in its transaction, where no
/// guard watches: the function then runs another role's cast or operator function, unchecked,
/// as the runner (or as its owner, if it is SECURITY DEFINER).
pub fn refuse_procedural(signature: &str, language: &str) -> ! {
    // SAFETY: a plain read of the current user.
    let runner = crate::privilege::role_name(unsafe { pg_sys::GetUserId() });
    reject(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "the expression would run function {signature}, written in {language}, as role {runner}: a {language} function reuses the casts and expressions its language compiled earlier in the writer's transaction, unchecked, so another role's code could run through it (as role {runner}, or as the function's owner if it is SECURITY DEFINER)"
        ),
        Some("Call a SQL-language function (LANGUAGE sql) instead."),
    )
}

fn refuse(signature: &str, owner: &str, why: Why) -> ! {
    // SAFETY: a plain read of the current user.
    let runner = crate::privilege::role_name(unsafe { pg_sys::GetUserId() });
    let reason = match why {
        Why::Call => "the expression does not name it (it comes from a view or a policy the expression reads, or from a conversion written as a function call)".to_string(),
        Why::Cast => "it is a cast's function (a cast written x::type, or an implicit one, which a type's owner may create at any time)".to_string(),
        Why::InputOutput(t) => format!("it is the input or output function of type {}", type_name(t)),
        Why::RangeSupport(t) => format!("it is a support function of range type {}, which the planner and range functions call", type_name(t)),
        Why::Operator(opno) => format!("it is the function of operator {}, which the expression does not name (it comes from a view or a policy the expression reads)", operator_name(opno)),
        Why::Swapped(other, used) => format!("it is the function of operator {}, a commutator or negator of operator {}, which the expression uses: the planner may run it in that operator's place (NOT (a = b) becomes a <> b, and 1 < x is estimated with >'s function), and naming one operator trusts that operator's own function only (name it too: OPERATOR(schema.op))", operator_name(other), operator_name(used)),
        Why::RunsSql | Why::TypeFromArgument => "it runs code that cannot be checked beforehand".to_string(),
    };
    reject(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "the expression would run function {signature}, owned by role {owner}, with the rights of role {runner}: {reason}; only functions the expression names, or whose owner has the rights of role {runner}, run there (call it by name, schema-qualified, if you trust role {owner}; pg_catalog.format('%s', value) renders a value as text without a cast)"
        ),
        None,
    )
}
