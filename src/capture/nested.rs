//! A statement's events go before those of the statements its own AFTER triggers run.
//!
//! Capture takes a statement's event ids when its AFTER STATEMENT trigger fires, as the
//! statement finishes, after its AFTER ROW triggers ran: a write of the same table by one of
//! those (an `AFTER INSERT` trigger updating the row just inserted) took its ids first, and a
//! subscription sent in id order would send the UPDATE before the INSERT it changed. So for the
//! subscriptions whose events are claimed in order (ordered as a whole, per key, by
//! transaction), a statement's capture moves the events of the statements nested in its AFTER
//! triggers after its own: they get new ids, taken after the statement's (`follow`). A write
//! made while the statement still ran (by a BEFORE trigger, or a function in its query) keeps
//! its place before the statement's events: it happened first.
//!
//! Statements are told apart by frames: one for each statement that writes while it finishes
//! (its AFTER triggers fire then; a SELECT with a data-modifying WITH query too, whose AFTER
//! triggers fire likewise; WITH queries the statement did not read to their end are run first,
//! as ExecutorFinish would, so what their BEFORE triggers wrote stays before) and one for each
//! `COPY FROM` while it runs (it fires them itself, without the executor; what its BEFORE
//! triggers run while it copies is noted with the COPYs then copying, `copies_running`, and
//! stays before it). A capture notes which ids it took for an ordered subscription under the
//! innermost frame; a statement's own capture moves those noted under frames opened after its
//! own. A capture fired under a frame
//! not its statement's (a foreign key's cascade, whose triggers fire with those of the
//! statement that ran it) moves what ran after the cascade wrote its relation (its own
//! triggers' writes among them): the cascade, run without firing triggers, takes a serial as
//! it finishes, and the notes under frames opened after it go. Notes go when the outermost
//! frame closes; frames left by an ERROR at the (sub)transaction's abort. A library loaded in
//! the middle of a statement (not preloaded) opens one frame for the statements already
//! finishing then (`open_loaded`).

use std::cell::{Cell, RefCell};

use pgrx::prelude::*;

use super::frames_end::Ended;

mod ctes;
mod notes;

use ctes::finish_writable_ctes;

pub use notes::follow;

#[derive(Clone, Copy)]
enum Statement {
    Query(*mut pg_sys::QueryDesc),
    /// A COPY FROM, opened while this many others were copying rows (a COPY run by a BEFORE
    /// trigger of a COPY's row).
    Copy(u32),
    /// The statements that were finishing when the library was loaded (`open_loaded`).
    Loaded,
}

#[derive(Clone, Copy)]
struct Frame {
    serial: u64,
    /// The transaction nest level it opened in (frames of an aborted one are dropped).
    level: i32,
    statement: Statement,
}

thread_local! {
    /// Innermost last.
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    static LAST_SERIAL: Cell<u64> = const { Cell::new(0) };
    /// A foreign key's cascade that wrote a relation while a frame was open: a serial taken as
    /// it finished, and the relation.
    static CASCADES: RefCell<Vec<(u64, pg_sys::Oid)>> = const { RefCell::new(Vec::new()) };
}

/// Where a capture runs: the innermost frame (0: none) and whether it is the frame of the
/// statement whose trigger fired.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    frame: u64,
    own: bool,
    /// The frame is a COPY FROM's, opened while this many other COPYs were copying: what was
    /// written while more were copying ran while this one copied (`copies_running`).
    copy: Option<u32>,
    /// Notes under frames opened after this serial are what the capture moves after its own
    /// events (0: none): the frame's own serial, or for a cascade's capture the serial its
    /// first cascade on the relation took under that frame (what ran after it wrote), or for
    /// the frame of a library loaded mid-statement the serial before it (`open_loaded`).
    after: u64,
}

static mut PREVIOUS_FINISH: pg_sys::ExecutorFinish_hook_type = None;

extern "C-unwind" {
    // executor/executor.h. Called unguarded: its ERRORs must reach the client untouched (pgrx's guarded bindings rethrow code, message, detail and hint only).
    #[link_name = "standard_ExecutorFinish"]
    fn standard_executor_finish(query: *mut pg_sys::QueryDesc);
    // commands/copy.h: the error context callback of a COPY FROM's rows (only its address is
    // used).
    #[link_name = "CopyFromErrorCallback"]
    fn copy_from_error_callback(arg: *mut std::ffi::c_void);
}

/// Installs the hook that opens and closes statements' frames (`crate::utility_hook` opens
/// COPY's), and the callbacks that drop an aborted statement's; once per process, from
/// `_PG_init`.
pub fn init() {
    // SAFETY: called once per process on the main thread, before any statement runs.
    unsafe {
        PREVIOUS_FINISH = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(on_executor_finish);
    }
    super::frames_end::register(forget);
    open_loaded();
}

/// Without preloading, the first trigger of pg_webhook's to fire in a session loads the
/// library: the statements finishing then (the INSERT whose AFTER trigger ran the statement
/// whose capture loaded it, a COPY whose BEFORE STATEMENT trigger did) began before the hooks
/// were there, and have no frame. One frame stands for them all till the transaction ends.
/// Their captures fire innermost first, each after everything noted since the load (all of it
/// ran nested in that statement, and what ran before, under an inner one's frame, moves too)
/// but what was written while a COPY copied (its BEFORE triggers' writes stay before it).
fn open_loaded() {
    // SAFETY: plain reads of the process and transaction state.
    let mid_transaction = unsafe {
        !pg_sys::process_shared_preload_libraries_in_progress && pg_sys::IsTransactionState()
    };
    if mid_transaction {
        // Its serial less one is where its captures' moves start: never 0 (nothing).
        LAST_SERIAL.set(LAST_SERIAL.get() + 1);
        // At the top level: the statements it stands for may have begun outside a
        // subtransaction that aborts.
        open_at(Statement::Loaded, 1);
    }
}

/// Not guarded: opening and closing a frame cannot fail, and the next ExecutorFinish's ERRORs
/// pass through as PostgreSQL raised them.
unsafe extern "C-unwind" fn on_executor_finish(query: *mut pg_sys::QueryDesc) {
    // SAFETY: the QueryDesc PostgreSQL passes to ExecutorFinish, started and run.
    unsafe {
        let serial = fires_own_triggers(query).then(|| {
            finish_writable_ctes(query);
            open(Statement::Query(query))
        });
        if serial.is_none() {
            note_cascade(query);
        }
        PREVIOUS_FINISH.unwrap_or(standard_executor_finish)(query);
        if let Some(serial) = serial {
            close(serial);
        }
    }
}

/// `query` writes a table and fires its AFTER triggers as it finishes (not left to the
/// statement running it, as a foreign key's cascade is). A SELECT writes with a data-modifying
/// WITH query.
///
/// # Safety
/// `query` is a started QueryDesc.
unsafe fn fires_own_triggers(query: *mut pg_sys::QueryDesc) -> bool {
    use pg_sys::CmdType::*;
    // SAFETY: see the function contract.
    unsafe {
        let writes = match (*query).operation {
            CMD_INSERT | CMD_UPDATE | CMD_DELETE | CMD_MERGE => true,
            CMD_SELECT => {
                !(*query).plannedstmt.is_null() && (*(*query).plannedstmt).hasModifyingCTE
            }
            _ => false,
        };
        writes
            && !(*query).estate.is_null()
            && (*(*query).estate).es_top_eflags as u32 & pg_sys::EXEC_FLAG_SKIP_TRIGGERS == 0
    }
}

/// Opens the frame of a `COPY FROM` about to run; `close` it with the serial returned.
pub fn open_copy() -> u64 {
    open(Statement::Copy(copies_running()))
}

/// A writing statement that leaves its triggers to the statement running it (a foreign key's
/// cascade), inside a frame: notes a serial for each relation it wrote.
///
/// # Safety
/// `query` is a started QueryDesc.
unsafe fn note_cascade(query: *mut pg_sys::QueryDesc) {
    use pg_sys::CmdType::*;
    // SAFETY: see the function contract.
    unsafe {
        let writes = matches!(
            (*query).operation,
            CMD_INSERT | CMD_UPDATE | CMD_DELETE | CMD_MERGE
        );
        if !writes || (*query).estate.is_null() || FRAMES.with(|f| f.borrow().is_empty()) {
            return;
        }
        let serial = LAST_SERIAL.get() + 1;
        LAST_SERIAL.set(serial);
        let opened = (*(*query).estate).es_opened_result_relations;
        for info in pgrx::PgList::<pg_sys::ResultRelInfo>::from_pg(opened).iter_ptr() {
            let relid = (*(*info).ri_RelationDesc).rd_id;
            CASCADES.with(|c| c.borrow_mut().push((serial, relid)));
        }
    }
}

/// Opens a frame for `statement`; its serial.
fn open(statement: Statement) -> u64 {
    // SAFETY: a plain read of the transaction state.
    open_at(statement, unsafe {
        pg_sys::GetCurrentTransactionNestLevel()
    })
}

/// Opens a frame for `statement` at transaction nest level `level`; its serial.
fn open_at(statement: Statement, level: i32) -> u64 {
    let serial = LAST_SERIAL.get() + 1;
    LAST_SERIAL.set(serial);
    FRAMES.with(|f| {
        f.borrow_mut().push(Frame {
            serial,
            level,
            statement,
        })
    });
    serial
}

/// Closes frame `serial` (and any an ERROR left above it); the notes go with the last frame.
pub fn close(serial: u64) {
    let outermost = FRAMES.with(|f| {
        let mut frames = f.borrow_mut();
        frames.retain(|frame| frame.serial < serial);
        frames.is_empty()
    });
    if outermost {
        notes::clear();
        CASCADES.with(|c| c.borrow_mut().clear());
    }
}

/// Where a capture trigger of relation `relid` fires.
///
/// # Safety
/// Inside the trigger call: the innermost frame's statement is still open.
pub unsafe fn place(relid: pg_sys::Oid) -> Place {
    let top = FRAMES.with(|f| f.borrow().last().copied());
    let Some(top) = top else {
        return Place {
            frame: 0,
            own: false,
            copy: None,
            after: 0,
        };
    };
    let own = match top.statement {
        // COPY FROM fires only its own table's triggers (an insertion cascades nowhere).
        // What its BEFORE triggers wrote while it copied is under its frame too, but noted
        // with one more COPY copying (`copies_running`), and stays.
        Statement::Copy(_) => true,
        // SAFETY: see the function contract; the result relations live until ExecutorEnd.
        Statement::Query(query) => unsafe { writes(query, relid) },
        // Statements without a frame: this capture's is the innermost of them still open.
        Statement::Loaded => true,
    };
    let after = if matches!(top.statement, Statement::Loaded) {
        // What was noted under it too: the captures of the statements it stands for, inner
        // ones first.
        top.serial - 1
    } else if own {
        top.serial
    } else {
        CASCADES.with(|c| {
            c.borrow()
                .iter()
                .find(|&&(serial, rel)| serial > top.serial && rel == relid)
                .map_or(0, |&(serial, _)| serial)
        })
    };
    Place {
        frame: top.serial,
        own,
        copy: match top.statement {
            Statement::Copy(copying) => Some(copying),
            Statement::Loaded => Some(0),
            Statement::Query(_) => None,
        },
        after,
    }
}

/// How many COPY FROMs are copying rows in this backend: each one's error context (which
/// names the line) is set while it reads and inserts them, and taken off before its AFTER
/// triggers fire, so what its BEFORE triggers run sees it and what its AFTER triggers run does
/// not. Counted, not just found: a COPY run by a BEFORE trigger of another's row fires its
/// AFTER triggers while the other's context is still set.
fn copies_running() -> u32 {
    let mut copies = 0;
    // SAFETY: the backend's error context stack, a list PostgreSQL keeps valid while it is set.
    unsafe {
        let mut context = pg_sys::error_context_stack;
        while !context.is_null() {
            let callback = (*context).callback.map(|f| f as *const ());
            if callback == Some(copy_from_error_callback as *const ()) {
                copies += 1;
            }
            context = (*context).previous;
        }
    }
    copies
}

/// `query` has `relid` among its result relations.
///
/// # Safety
/// `query` is a started QueryDesc that has not ended.
unsafe fn writes(query: *mut pg_sys::QueryDesc, relid: pg_sys::Oid) -> bool {
    // SAFETY: see the function contract.
    unsafe {
        let opened = (*(*query).estate).es_opened_result_relations;
        pgrx::PgList::<pg_sys::ResultRelInfo>::from_pg(opened)
            .iter_ptr()
            .any(|info| (*(*info).ri_RelationDesc).rd_id == relid)
    }
}

/// Drops the frames an ERROR left, and at a transaction's end the notes (see `frames_end`).
fn forget(ended: Ended) {
    match ended {
        Ended::Transaction => {
            FRAMES.with(|f| f.borrow_mut().clear());
            notes::clear();
            CASCADES.with(|c| c.borrow_mut().clear());
        }
        Ended::Subtransaction(level) => {
            FRAMES.with(|f| f.borrow_mut().retain(|frame| frame.level < level));
        }
    }
}
