//! Helpers for SPI queries: reading one row or none, running statements at the latest snapshot
//! or under settings of their own.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::datum::DatumWithOid;
use pgrx::spi::{SpiClient, SpiResult, SpiTupleTable};

/// The statement in `sql/queries/<file>` (or made of several files' texts, in order: a shared
/// part of more than one statement has a file of its own), NUL-terminated for raw SPI calls.
macro_rules! query_cstr {
    ($($file:literal),+) => {{
        const TEXT: &str = concat!(
            $(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/queries/", $file)),)+
            "\0"
        );
        match std::ffi::CStr::from_bytes_with_nul(TEXT.as_bytes()) {
            Ok(c) => c,
            Err(_) => panic!(concat!("sql/queries/", $($file, " ",)+ "hold a NUL byte")),
        }
    }};
}
pub(crate) use query_cstr;

/// Runs `query` and reads its first row with `read`; `None` when it returns no row.
pub fn first_row<T>(
    client: &SpiClient<'_>,
    query: &str,
    args: &[DatumWithOid<'_>],
    read: impl FnOnce(&SpiTupleTable<'_>) -> SpiResult<T>,
) -> SpiResult<Option<T>> {
    let rows = client.select(query, Some(1), args)?;
    if rows.is_empty() {
        return Ok(None);
    }
    read(&rows.first()).map(Some)
}

/// The columns of a row read by `first_row_now` or `run_at_latest_snapshot`.
pub struct RowReader {
    tuple: pgrx::pg_sys::HeapTuple,
    desc: pgrx::pg_sys::TupleDesc,
}

impl RowReader {
    /// Column `n` (from 1) as `T`; `None` when NULL. A column of another type than `T` (a
    /// query changed without its reader) is an ERROR naming both, not a misread datum.
    pub fn get<T: pgrx::FromDatum + pgrx::IntoDatum>(&self, n: i32) -> Option<T> {
        let mut null = false;
        // SAFETY: the tuple and its descriptor are SPI's result, alive while the connection
        // that read them is; the datum is read as `T` only if the column's type is `T`'s.
        let read = unsafe {
            let datum = pgrx::pg_sys::SPI_getbinval(self.tuple, self.desc, n, &mut null);
            T::try_from_datum(datum, null, pgrx::pg_sys::SPI_gettypeid(self.desc, n))
        };
        match read {
            Ok(value) => value,
            Err(e) => pgrx::error!("pg_webhook: reading column {n} of an internal query: {e}"),
        }
    }
}

/// The first row of read-only `query` (`None`: no row), read at the latest snapshot as the
/// extension owner, sandboxed (search_path pinned): for reads of pg_webhook's private tables from
/// inside anyone's statement — a capture trigger, a DROP — which must see what is committed now
/// even when the statement's transaction snapshot is older (REPEATABLE READ). pgrx would run
/// the query read-write once the transaction has an xid, and SPI would then take the
/// transaction snapshot; this runs it read-only at a snapshot of its own.
pub fn first_row_now<T>(
    query: &CStr,
    args: &[Arg],
    read: impl FnOnce(&RowReader) -> T,
) -> Result<Option<T>, String> {
    use pgrx::pg_sys;
    let owner = crate::privilege::extension_owner();
    crate::privilege::as_owner_sandboxed(owner, || {
        // SAFETY: pushed here, popped below; an ERROR in between aborts the (sub)transaction,
        // which pops it.
        unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
        let row =
            pgrx::spi::Spi::connect(|_client| first_row_at_active_snapshot(query, args, read));
        // SAFETY: the snapshot pushed above.
        unsafe { pg_sys::PopActiveSnapshot() };
        row
    })
}

/// The first row of read-only `query` at the active snapshot; inside an SPI connection.
fn first_row_at_active_snapshot<T>(
    query: &CStr,
    args: &[Arg],
    read: impl FnOnce(&RowReader) -> T,
) -> Result<Option<T>, String> {
    use pgrx::pg_sys;
    let mut spi = SpiArgs::of(args);
    // SAFETY: a read-only SPI query with as many arguments as types and null flags; the result
    // is read before the connection closes.
    unsafe {
        let status = pg_sys::SPI_execute_with_args(
            query.as_ptr(),
            args.len() as i32,
            spi.types.as_mut_ptr(),
            spi.values.as_mut_ptr(),
            spi.nulls.as_ptr(),
            true,
            1,
        );
        if status != pg_sys::SPI_OK_SELECT as i32 {
            return Err(format!("SPI status {status}"));
        }
        let table = pg_sys::SPI_tuptable;
        if table.is_null() || pg_sys::SPI_processed == 0 {
            return Ok(None);
        }
        let reader = RowReader {
            tuple: *(*table).vals,
            desc: (*table).tupdesc,
        };
        Ok(Some(read(&reader)))
    }
}

/// An argument of `run_at_latest_snapshot` and `first_row_now`: its type and value (`None`:
/// NULL).
pub type Arg = (pgrx::pg_sys::Oid, Option<pgrx::pg_sys::Datum>);

/// Arguments as SPI takes them: types, values and null flags.
struct SpiArgs {
    types: Vec<pgrx::pg_sys::Oid>,
    values: Vec<pgrx::pg_sys::Datum>,
    nulls: Vec<std::ffi::c_char>,
}

impl SpiArgs {
    fn of(args: &[Arg]) -> SpiArgs {
        SpiArgs {
            types: args.iter().map(|a| a.0).collect(),
            values: args
                .iter()
                .map(|a| a.1.unwrap_or(pgrx::pg_sys::Datum::from(0)))
                .collect(),
            nulls: args
                .iter()
                .map(|a| if a.1.is_some() { b' ' } else { b'n' } as std::ffi::c_char)
                .collect(),
        }
    }
}

/// `value` as an `Arg`.
pub fn arg<T: pgrx::IntoDatum>(value: T) -> Arg {
    (T::type_oid(), value.into_datum())
}

thread_local! {
    /// The snapshot `run_at_latest_snapshot` reads at while a `OneSnapshot` is held.
    static PINNED: Cell<pgrx::pg_sys::Snapshot> = const { Cell::new(std::ptr::null_mut()) };
}

/// While held, `run_at_latest_snapshot` (and so `at_latest`) reads at the latest snapshot as of
/// when it was taken, one for all: reads that must agree with each other (a subscription's
/// triggers and the tables under it, which another session's partition DDL commits together)
/// see one moment. For reads only: a write at it could miss a row updated since.
pub struct OneSnapshot {
    snapshot: pgrx::pg_sys::Snapshot,
    /// The one pinned before, pinned again when this one goes (nested, the inner one's
    /// moment holds inside it).
    previous: pgrx::pg_sys::Snapshot,
}

impl OneSnapshot {
    pub fn take() -> OneSnapshot {
        // SAFETY: a copy of the latest snapshot, registered with the current resource owner
        // (released at the end of the transaction should this not be dropped first).
        let snapshot = unsafe { pgrx::pg_sys::RegisterSnapshot(pgrx::pg_sys::GetLatestSnapshot()) };
        let previous = PINNED.with(|p| p.replace(snapshot));
        OneSnapshot { snapshot, previous }
    }
}

impl Drop for OneSnapshot {
    fn drop(&mut self) {
        PINNED.with(|p| p.set(self.previous));
        // Not while an ERROR unwinds: the transaction's abort releases it then.
        if !std::thread::panicking() {
            // SAFETY: registered by `take` in this transaction, released once.
            unsafe { pgrx::pg_sys::UnregisterSnapshot(self.snapshot) };
        }
    }
}

/// Runs `statement` at the latest snapshot — the way PostgreSQL reads and writes its own
/// catalogs during DDL, whatever the transaction's isolation level — calling `each` on every row
/// it returns; how many rows it processed. For pg_webhook's trigger and subscription bookkeeping:
/// under REPEATABLE READ the transaction snapshot can predate a subscription or a trigger the
/// DDL acts on, or the last update of a subscription's row, which would then be missed, acted on
/// though gone, or fail to serialize. Must be called inside an SPI connection (`Spi::connect`).
pub fn run_at_latest_snapshot(
    statement: &CStr,
    args: &[Arg],
    mut each: impl FnMut(&RowReader),
) -> Result<u64, String> {
    use pgrx::pg_sys;
    let mut spi = SpiArgs::of(args);
    // SAFETY: a plan for as many arguments as types, freed below; SPI copies the latest snapshot
    // when it pushes it; the rows are read before the connection closes.
    unsafe {
        let plan = pg_sys::SPI_prepare(
            statement.as_ptr(),
            args.len() as i32,
            spi.types.as_mut_ptr(),
        );
        if plan.is_null() {
            let code = pg_sys::SPI_result;
            return Err(format!("SPI_prepare failed: {code}"));
        }
        let pinned = PINNED.with(Cell::get);
        let snapshot = match pinned.is_null() {
            true => pg_sys::GetLatestSnapshot(),
            false => pinned,
        };
        let status = pg_sys::SPI_execute_snapshot(
            plan,
            spi.values.as_mut_ptr(),
            spi.nulls.as_ptr(),
            snapshot,
            std::ptr::null_mut(),
            false,
            true,
            0,
        );
        pg_sys::SPI_freeplan(plan);
        if status < 0 {
            return Err(format!("SPI status {status}"));
        }
        let processed = pg_sys::SPI_processed;
        let table = pg_sys::SPI_tuptable;
        if !table.is_null() {
            for i in 0..processed as usize {
                each(&RowReader {
                    tuple: *(*table).vals.add(i),
                    desc: (*table).tupdesc,
                });
            }
        }
        Ok(processed)
    }
}

/// The OID of relation `webhook.<name>`: invalid when the schema or the relation is not there.
/// Inside a transaction.
pub fn webhook_relation(name: &CStr) -> pgrx::pg_sys::Oid {
    use pgrx::pg_sys;
    // SAFETY: syscache lookups with valid C strings, inside a transaction.
    unsafe {
        let namespace = pg_sys::get_namespace_oid(c"webhook".as_ptr(), true);
        if namespace == pg_sys::Oid::INVALID {
            return pg_sys::Oid::INVALID;
        }
        pg_sys::get_relname_relid(name.as_ptr(), namespace)
    }
}

/// `run_at_latest_snapshot`, raising an ERROR that says what it was `doing` if it fails.
pub fn at_latest(doing: &str, statement: &CStr, args: &[Arg], each: impl FnMut(&RowReader)) -> u64 {
    run_at_latest_snapshot(statement, args, each)
        .unwrap_or_else(|e| pgrx::error!("pg_webhook: {doing}: {e}"))
}

/// How pg_webhook parses user-written SQL (filters, payloads), whatever the session has set: with
/// `standard_conforming_strings` off, `'\''` closes a string literal that the same text leaves
/// open when it is on, so text checked in one session as one expression could run in another as
/// a different query, with more statements in it. `backslash_quote` decides whether `\'` may stand
/// in an `E''` string. No other setting changes what PostgreSQL's scanner makes of a text
/// (`escape_string_warning` only warns). `transform_null_equals` changes what analysis makes of
/// `x = NULL` (a test for NULL instead of a comparison), which the check of literals relies on
/// (see `literals`): the writer's session must not turn it on.
pub const PARSING: [(&CStr, &CStr); 3] = [
    (c"standard_conforming_strings", c"on"),
    (c"backslash_quote", c"on"),
    (c"transform_null_equals", c"off"),
];

/// The value built-in setting `name` has as configured for the server (its reset value), not
/// as this session set it; copied at once.
pub fn configured_value(name: &CStr) -> std::ffi::CString {
    // SAFETY: a setting lookup on the main thread; the result is NULL or NUL-terminated, and
    // may point into a buffer the next call reuses, so it is copied before anything else runs.
    unsafe {
        let value = pgrx::pg_sys::GetConfigOptionResetString(name.as_ptr());
        if value.is_null() {
            return std::ffi::CString::default();
        }
        CStr::from_ptr(value).to_owned()
    }
}

/// Runs `f` with `settings` (name, value) in a GUC nest level of its own, the way PostgreSQL
/// applies a function's SET clause: every setting changed inside — these and any a statement
/// makes, `set_config(..., false)` included — is thrown away afterwards. On an ERROR the
/// (sub)transaction abort pops the nest level.
pub fn with_settings<R>(settings: &[(&CStr, &CStr)], f: impl FnOnce() -> R) -> R {
    let nest = push_settings(settings);
    let result = f();
    pop_settings(nest);
    result
}

/// Opens a GUC nest level with `settings` applied; `pop_settings` closes it (or the abort of
/// the transaction does, on an ERROR).
pub fn push_settings(settings: &[(&CStr, &CStr)]) -> i32 {
    // SAFETY: a GUC nest level, popped by `pop_settings` or by the abort of the transaction.
    let nest = unsafe { pgrx::pg_sys::NewGUCNestLevel() };
    set_in_nest(settings);
    nest
}

/// Applies `settings` in the GUC nest level `push_settings` opened last.
pub fn set_in_nest(settings: &[(&CStr, &CStr)]) {
    use pgrx::pg_sys;
    for (name, value) in settings {
        // SAFETY: valid C strings naming user-settable settings; a save that AtEOXact_GUC
        // undoes.
        unsafe {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
    }
}

/// Closes the nest level `push_settings` opened, throwing away every setting changed in it.
pub fn pop_settings(nest: i32) {
    // SAFETY: `false` discards every change made inside the nest level, session-level ones
    // too (with `true`, a set_config(..., false) would survive into the caller's session).
    unsafe { pgrx::pg_sys::AtEOXact_GUC(false, nest) };
}

/// This session's database name, read as bytes: it is in the encoding of the database that
/// named it ("café" named in a LATIN1 database is the byte 0xE9), and pgrx hands text to Rust
/// unchecked in a UTF8 database, so read as text it made a `String` that is not UTF-8, sent as
/// is in CloudEvents' `source`. Not UTF-8, it is read lossily. `None` when the database is
/// gone.
pub fn database_name() -> Option<String> {
    // SAFETY: a syscache lookup of this session's database, inside a transaction; the palloc'd
    // name (NULL when missing) is copied out.
    unsafe {
        let name = pgrx::pg_sys::get_database_name(pgrx::pg_sys::MyDatabaseId);
        (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
    }
}
