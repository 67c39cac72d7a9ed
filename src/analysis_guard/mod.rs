//! No other role's code runs while PostgreSQL analyses, plans or runs user-written SQL, beyond
//! what `checked_sql` checked. Analysis runs code: a literal of a composite, array or range
//! type is read through its type's input function then and there, which checks the domains
//! within the type (see `literals`). Planning and running look the catalog up again, after
//! the check: an operator's commutator or negator defined, or a domain's constraint added,
//! in between would run unchecked.
//!
//! So while `checked_sql` has PostgreSQL analyse a query, and while it plans and runs the
//! checked plan, the fmgr hooks refuse any function made after initdb that is not SECURITY
//! DEFINER (those run as their owner) and whose owner lacks the privileges of the role the
//! query runs as — unless, once the check has passed, that owner's code is code the text
//! names: a role whose function the text calls by name may redefine that function as it likes,
//! so its other functions (an inlined SQL function's body calls them) are no new trust. A
//! function in a procedural language is refused whoever owns it, SECURITY DEFINER or not: it
//! reuses casts and expressions its language compiled earlier in the transaction, unwatched.
//! Such a function is refused when it starts, not when it is looked up: planning looks up
//! functions it never runs (the expressions of a table's indexes, to match them), and an
//! FmgrInfo made under the guard keeps the hook, so one kept in a cache that outlives the
//! statement (a range type's support functions, loaded as its literal is read) is checked at
//! every later call under a guard too.
//!
//! The same hooks watch the rendering of rows as json, which runs no user-written SQL but may
//! call a cast to json of a column's type that the type's owner made: at capture (`capturing`)
//! and in a backfill's chunks (`rendering_for`).

use std::cell::RefCell;

use pgrx::pg_sys;
use pgrx::prelude::*;

mod refusal;

use refusal::refuse_untrusted;

use crate::callees::built_in;
use crate::catalog_cache::{oid, with_row};

/// What the guard is watching.
#[derive(Clone, Copy, PartialEq)]
pub enum Phase {
    /// PostgreSQL analyses user-written text.
    Analysing,
    /// PostgreSQL plans and runs a checked query.
    Running,
    /// A backfill chunk renders its rows' images as the table's owner (`rendering_for`), in the
    /// runner process of this role, the subscription's owner: a function's owner must have its
    /// privileges, and those of the table's owner it runs as.
    Rendering(pg_sys::Oid),
    /// A backfill chunk reads back the last key it kept as the table's owner, in the runner
    /// process of this role (`reading_key_for`): as `Rendering`.
    ReadingKey(pg_sys::Oid),
    /// Capture renders a row of a table owned by this role as the writer (`capturing`): a
    /// function's owner must have the writer's privileges or the table owner's.
    Capturing(pg_sys::Oid),
}

/// The guard in force: its phase and the owners whose code the text names.
struct Guard {
    phase: Phase,
    named_owners: Vec<pg_sys::Oid>,
}

thread_local! {
    /// Set while a query is analysed, planned or run under the guard (main thread only).
    static GUARD: RefCell<Option<Guard>> = const { RefCell::new(None) };
}

static mut PREVIOUS_NEEDS: pg_sys::needs_fmgr_hook_type = None;
static mut PREVIOUS_HOOK: pg_sys::fmgr_hook_type = None;

/// Installs the hooks; once per process, from `_PG_init`.
pub fn init() {
    // SAFETY: called once per process on the main thread, before any statement runs.
    unsafe {
        PREVIOUS_NEEDS = pg_sys::needs_fmgr_hook;
        pg_sys::needs_fmgr_hook = Some(needs_hook);
        PREVIOUS_HOOK = pg_sys::fmgr_hook;
        pg_sys::fmgr_hook = Some(fmgr_hook);
    }
}

/// Runs `analyse` (which has PostgreSQL analyse user-written SQL) under the guard.
pub fn analysing<T>(analyse: impl FnOnce() -> T) -> T {
    guarded(Phase::Analysing, &[], analyse)
}

/// Runs `run` under the guard in `phase`, letting functions of `named_owners` (and of roles
/// whose privileges they have) run too; the guard ends with it, by return or by ERROR, and
/// the one before it (if any) is back.
pub fn guarded<T>(phase: Phase, named_owners: &[pg_sys::Oid], run: impl FnOnce() -> T) -> T {
    with_guard(
        Guard {
            phase,
            named_owners: named_owners.to_vec(),
        },
        run,
    )
}

/// Runs `render` (a backfill chunk rendering its rows as the table's owner, in the callback
/// runner: `capture::shaped_images::backfill_images`) so that no function made after initdb
/// runs unless its owner has the privileges of `owner`, the subscription's owner, SECURITY
/// DEFINER or not. A runner process runs one owner's code only (`worker::callbacks::turn`):
/// code of another role's there — a cast to json the table's owner, or a column type's,
/// made — could use what that owner's callbacks and filters left in the process (a `dblink`
/// connection, logged in as them), and leave things for them.
pub fn rendering_for<T>(owner: pg_sys::Oid, render: impl FnOnce() -> T) -> T {
    with_guard(
        Guard {
            phase: Phase::Rendering(owner),
            named_owners: Vec::new(),
        },
        render,
    )
}

/// Runs `read` (a backfill chunk reading the key it kept back through the key types' input
/// functions as the table's owner, in the callback runner: `capture::primary_key::bounds`)
/// under the rule of `rendering_for`: the input function of a composite, array or range key
/// checks the domains within it, whose checks may call any role's functions.
pub fn reading_key_for<T>(owner: pg_sys::Oid, read: impl FnOnce() -> T) -> T {
    with_guard(
        Guard {
            phase: Phase::ReadingKey(owner),
            named_owners: Vec::new(),
        },
        read,
    )
}

/// Runs `render` (capture rendering rows of a table owned by `table_owner` as json, as the
/// writer: `capture::row_json`) so that no function made after initdb runs unless its owner
/// has the writer's privileges (nothing gained) or the table owner's (who may run any code as
/// the table's writers already, by a trigger), SECURITY DEFINER or not. `to_jsonb` calls a
/// cast to json of a column's type, and a type's owner may create one at any time: a role
/// owning an enum a subscribed table uses ran its code as every writer, superusers included.
pub fn capturing<T>(table_owner: pg_sys::Oid, render: impl FnOnce() -> T) -> T {
    with_guard(
        Guard {
            phase: Phase::Capturing(table_owner),
            named_owners: Vec::new(),
        },
        render,
    )
}

/// Runs `run` under `guard`; the one before it (if any) is back when it ends, by return or
/// by ERROR.
fn with_guard<T>(guard: Guard, run: impl FnOnce() -> T) -> T {
    struct Restores(Option<Guard>);
    impl Drop for Restores {
        fn drop(&mut self) {
            let before = self.0.take();
            GUARD.with(|g| *g.borrow_mut() = before);
        }
    }
    let _restores = Restores(GUARD.with(|g| g.borrow_mut().replace(guard)));
    run()
}

/// Whether a checked query is planned or run under the guard now, and if so whether `owner`'s
/// code is code its text names (a named owner has `owner`'s privileges).
pub fn running_names(owner: pg_sys::Oid) -> Option<bool> {
    GUARD.with(|g| {
        g.borrow()
            .as_ref()
            .filter(|g| g.phase == Phase::Running)
            // SAFETY: a plain read of role membership.
            .map(|g| {
                (g.named_owners.iter()).any(|&o| unsafe { pg_sys::has_privs_of_role(o, owner) })
            })
    })
}

/// Whether a checked query is planned or run under the guard now.
pub fn running() -> bool {
    GUARD.with(|g| {
        g.borrow()
            .as_ref()
            .is_some_and(|g| g.phase == Phase::Running)
    })
}

/// Whether `function` is a set-returning SQL function (not made by initdb) and a checked query
/// is planned or run: the planner inlines such a function in FROM only when no hook is needed,
/// and an inlined body is planned — its views expanded, its stable calls evaluated for
/// estimates — inside the query's planning, where `plan_check` cannot judge it first. Not
/// inlined, it plans its own queries as it runs, each judged before the planner sees it.
/// A scalar SQL function is inlined only when its body is one expression with no FROM and no
/// subquery (PostgreSQL's inline_function): it brings no relation into the plan, and what it
/// calls is judged like the filter's own calls, so it is inlined as anywhere else (a filter
/// calling a helper per row would otherwise run the helper's query each time).
fn planned_apart(function: pg_sys::Oid) -> bool {
    running()
        && !built_in(function)
        && with_row(pg_sys::SysCacheIdentifier::PROCOID, function, |attribute| {
            oid(attribute(pg_sys::Anum_pg_proc_prolang)) == pg_sys::Oid::from(SQL_LANGUAGE)
                && attribute(pg_sys::Anum_pg_proc_proretset).is_some_and(|d| d.value() != 0)
        }) == Some(true)
}

/// pg_language's OID of SQL.
const SQL_LANGUAGE: u32 = 14;

/// Consulted by fmgr_info for every function not compiled into PostgreSQL that is neither
/// SECURITY DEFINER nor has settings of its own (those go to `fmgr_hook` as they start), and
/// by the planner before it inlines a SQL function. One the guard would refuse gets the hook:
/// `fmgr_hook` refuses it when it starts, under a guard (the planner loading an index's
/// expressions only looks, and does not inline it), and an FmgrInfo made now and kept in a
/// cache comes back to the hook at every call.
#[pg_guard]
unsafe extern "C-unwind" fn needs_hook(function: pg_sys::Oid) -> bool {
    if untrusted(function).is_some() || maybe_subtype_diff(function) || planned_apart(function) {
        return true;
    }
    // SAFETY: the previous hook, set before ours and never changed since.
    match unsafe { PREVIOUS_NEEDS } {
        Some(previous) => unsafe { previous(function) },
        None => false,
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn fmgr_hook(
    event: pg_sys::FmgrHookEventType::Type,
    flinfo: *mut pg_sys::FmgrInfo,
    arg: *mut pg_sys::Datum,
) {
    if event == pg_sys::FmgrHookEventType::FHET_START {
        // SAFETY: fmgr passes the FmgrInfo of the function starting.
        refuse_untrusted(unsafe { (*flinfo).fn_oid });
    }
    // SAFETY: the previous hook, with the arguments fmgr passed.
    if let Some(previous) = unsafe { PREVIOUS_HOOK } {
        unsafe { previous(event, flinfo, arg) };
    }
}

/// Whether `function` is a range type's `subtype_diff` (not built in), which gets the hook
/// guard or no guard: the type cache keeps it for the backend's life once a query (under no
/// guard, or under one that trusted its owner) has loaded the range type, and the planner
/// calls it from there when it estimates a range condition, so `fmgr_hook` must judge each
/// call by the guard in force then. Answered from the set of them `subtype_diffs` keeps (read
/// from pg_range once per backend and after each change to it): fmgr_info asks this for every
/// function not built in, a trigger's function at every statement, and a hash lookup costs a
/// single-row write less than reading the function's catalog row did.
fn maybe_subtype_diff(function: pg_sys::Oid) -> bool {
    !built_in(function) && crate::subtype_diffs::contains(function)
}

/// A function the guard in force refuses: in which phase, whose it is, who would run it, and
/// the procedural language it is written in when that is why (its owner being trusted).
struct Untrusted {
    phase: Phase,
    owner: pg_sys::Oid,
    runner: pg_sys::Oid,
    procedural: Option<pg_sys::Oid>,
}

/// The languages whose functions keep nothing compiled beyond the call (pg_language.dat:
/// internal 12, c 13, sql 14). A function in another (PL/pgSQL and the like) keeps casts and
/// expressions it compiled for the rest of the transaction, made where no guard watched.
const PLAIN_LANGUAGES: [u32; 3] = [12, 13, 14];

/// Whether the guard in force (if any) refuses `function`: made after initdb and either in a
/// procedural language, or not SECURITY DEFINER with an owner that has neither the current
/// user's privileges nor is one the guard lets run.
fn untrusted(function: pg_sys::Oid) -> Option<Untrusted> {
    if built_in(function) {
        return None;
    }
    let phase = GUARD.with(|g| g.borrow().as_ref().map(|g| g.phase))?;
    let row = with_row(pg_sys::SysCacheIdentifier::PROCOID, function, |attribute| {
        (
            oid(attribute(pg_sys::Anum_pg_proc_proowner)),
            attribute(pg_sys::Anum_pg_proc_prosecdef).is_some_and(|d| d.value() != 0),
            oid(attribute(pg_sys::Anum_pg_proc_prolang)),
        )
    });
    // fmgr_info raises its own ERROR for a function that is gone.
    let (owner, definer, language) = row?;
    // SAFETY: a plain read of the current user.
    let user = unsafe { pg_sys::GetUserId() };
    let runner = match phase {
        Phase::Rendering(owner) | Phase::ReadingKey(owner) => owner,
        Phase::Analysing | Phase::Running | Phase::Capturing(_) => user,
    };
    // SAFETY: a syscache read of role membership.
    let has_privs_of = |role: pg_sys::Oid| unsafe { pg_sys::has_privs_of_role(owner, role) };
    // The owner has the runner's privileges (a superuser, or the runner): nothing gained.
    let trusted = has_privs_of(runner);
    let refused = match phase {
        // Whose code runs in the process is what counts, and whose rights it runs with (the
        // table owner's: the subscription's owner's cast ran as a superuser owning the table);
        // the rendering runs in a transaction of the runner's own, where no unwatched code
        // compiled anything before it.
        Phase::Rendering(_) | Phase::ReadingKey(_) => Some(!(trusted && has_privs_of(user))),
        // The table owner's code runs as the table's writers anyway (a trigger of theirs, in
        // whatever language), so does code of roles with the writer's rights.
        Phase::Capturing(table_owner) => Some(!(trusted || has_privs_of(table_owner))),
        Phase::Analysing | Phase::Running => None,
    };
    if let Some(refused) = refused {
        return refused.then_some(Untrusted {
            phase,
            owner,
            runner,
            procedural: None,
        });
    }
    // A named owner has the owner's privileges: it could make this function's code its own.
    // SAFETY: a syscache read of role membership.
    let controls = |role: pg_sys::Oid| unsafe { pg_sys::has_privs_of_role(role, owner) };
    let named = GUARD.with(|g| {
        g.borrow()
            .as_ref()
            .is_some_and(|g| g.named_owners.iter().any(|&o| controls(o)))
    });
    // SECURITY DEFINER or not: the caches are the session's, whoever the function runs as.
    let procedural = (!PLAIN_LANGUAGES.contains(&language.to_u32())).then_some(language);
    (!(definer || trusted || named) || procedural.is_some()).then_some(Untrusted {
        phase,
        owner,
        runner,
        procedural: procedural.filter(|_| definer || trusted || named),
    })
}
