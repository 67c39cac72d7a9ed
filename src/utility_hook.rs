//! The `ProcessUtility` hook: the utility statements pg_webhook must see run.
//!
//! - `COPY FROM` fires its AFTER triggers itself, without the executor: it gets a frame of its
//!   own, so an ordered capture tells its rows from what its triggers wrote
//!   (`crate::capture::nested`).
//! - `COMMIT PREPARED` commits events that a transaction queued and then prepared: its commit
//!   callback saw `PREPARE`, not the commit, so the commit that finishes it wakes the workers
//!   (`crate::wake`).
//!
//! Everything else passes through untouched.

use pgrx::prelude::*;

static mut PREVIOUS_UTILITY: pg_sys::ProcessUtility_hook_type = None;

extern "C-unwind" {
    // tcop/utility.h. Called unguarded: its ERRORs must reach the client untouched (pgrx's
    // guarded bindings rethrow code, message, detail and hint only).
    #[link_name = "standard_ProcessUtility"]
    fn standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

/// Installs the hook; once per process, from `_PG_init`.
pub fn init() {
    // SAFETY: called once per process on the main thread, before any statement runs.
    unsafe {
        PREVIOUS_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(on_process_utility);
    }
}

/// What a utility statement is to pg_webhook.
enum Kind {
    CopyFrom,
    CommitPrepared,
    Other,
}

/// # Safety
/// `statement` is null or a node.
unsafe fn kind(statement: *mut pg_sys::Node) -> Kind {
    // SAFETY: see the function contract; the node tag says the node's type.
    unsafe {
        if statement.is_null() {
            return Kind::Other;
        }
        match (*statement).type_ {
            pg_sys::NodeTag::T_CopyStmt if (*statement.cast::<pg_sys::CopyStmt>()).is_from => {
                Kind::CopyFrom
            }
            pg_sys::NodeTag::T_TransactionStmt
                if (*statement.cast::<pg_sys::TransactionStmt>()).kind
                    == pg_sys::TransactionStmtKind::TRANS_STMT_COMMIT_PREPARED =>
            {
                Kind::CommitPrepared
            }
            _ => Kind::Other,
        }
    }
}

/// Whether this database has pg_webhook (a catalog lookup, in the statement's transaction).
fn has_pg_webhook() -> bool {
    // SAFETY: a catalog lookup inside a transaction; `true`: InvalidOid when missing.
    unsafe { pg_sys::get_extension_oid(c"pg_webhook".as_ptr(), true) != pg_sys::Oid::INVALID }
}

/// Not guarded: opening and closing a frame and setting a flag cannot fail (nor, but for a
/// broken catalog, looking up the extension, before the statement runs and with nothing to
/// drop), and the statement's ERRORs pass through as PostgreSQL raised them.
#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn on_process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    // SAFETY: the statement PostgreSQL passes to ProcessUtility.
    unsafe {
        let mut frame = None;
        match kind((*pstmt).utilityStmt) {
            Kind::CopyFrom => frame = Some(crate::capture::nested::open_copy()),
            // Noted before it runs: if it fails, the transaction aborts and the note goes.
            Kind::CommitPrepared => {
                crate::wake::note_prepared_committed();
                // Where pg_webhook is, as a commit that queued events: a database whose
                // workers all stopped gets them back (the launcher is asked for none where it
                // is not, which would start workers only to find nothing).
                if has_pg_webhook() {
                    crate::wake::note_event_queued();
                }
            }
            Kind::Other => {}
        }
        PREVIOUS_UTILITY.unwrap_or(standard_process_utility)(
            pstmt,
            query_string,
            read_only_tree,
            context,
            params,
            query_env,
            dest,
            qc,
        );
        if let Some(serial) = frame {
            crate::capture::nested::close(serial);
        }
    }
}
