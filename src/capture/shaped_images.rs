//! The row images of a shaped subscription's events, rendered by capture itself, never by the
//! subscription's query.
//!
//! Rendering a row as JSON can run code someone else wrote: `to_jsonb` calls a cast to json of
//! a column's type, which the type's owner may create at any time (`CREATE CAST` needs only
//! ownership of the type). The subscription's query runs as its owner, so an image it made would
//! run that code with the owner's rights, at every write, without the owner ever having chosen
//! it. So the query only chooses rows (the filter) and computes the owner's own payload
//! expression; the images of the chosen rows are rendered here, from the rows themselves, with
//! the columns the subscription sends: at capture as the writer (as a plain subscription's
//! images, and as in any trigger), in a backfill as the table's owner (as PostgreSQL runs a
//! table's index expressions in ANALYZE), sandboxed.

use pg_webhook_core::payload::{Operation, LARGEST_READABLE_IMAGES};
use pgrx::pg_sys;

use super::row_json::{text_bytes, within_limit, Image, RowJson};
use super::shaped::Shape;

/// (record, old_record) of one event.
pub type Images = (Option<Image>, Option<Image>);

/// A row the subscription's query chose: its position in the statement's transition table(s)
/// (from 1, increasing from one chosen row to the next), and the payload expression's value.
pub struct Chosen {
    pub position: i64,
    pub payload: Option<pg_sys::Datum>,
}

/// The images of the chosen rows of a statement (`op`, with the trigger's transition tables),
/// one row after another, rendered as the current user (the writer) in the current memory
/// context: those of a row are needed only until its event is written, so a statement of large
/// rows never holds all of them at once.
pub struct StatementImages {
    /// How rows are rendered; `None` when only the payloads are sent.
    json: Option<RowJson>,
    new: Option<Reader>,
    old: Option<Reader>,
    /// An UPDATE under `skip_unchanged`: rows whose sent columns did not change are skipped.
    compare: bool,
    /// The table's owner, as whose writer images are rendered.
    owner: pg_sys::Oid,
    /// Where a row's images are rendered, reset after each: what rendering leaves behind (a
    /// value read in full, the builder's tree), and images compared and not sent, would stay
    /// in the queue's batch memory until a batch is written, which an UPDATE of many unchanged
    /// large rows never does (300 of 900 kB held 1 GB). Those sent are copied out.
    scratch: pg_sys::MemoryContext,
}

impl StatementImages {
    /// # Safety
    /// `rel` is the trigger's relation and the tuplestores its transition tables for `op`.
    pub unsafe fn open(
        rel: pg_sys::Relation,
        op: Operation,
        new_rows: *mut pg_sys::Tuplestorestate,
        old_rows: *mut pg_sys::Tuplestorestate,
        shape: &Shape,
    ) -> StatementImages {
        let compare = op == Operation::Update && shape.skip_unchanged;
        // SAFETY: see the function contract.
        unsafe {
            let owner = (*(*rel).rd_rel).relowner;
            if shape.payload.is_some() && !compare {
                return StatementImages {
                    json: None,
                    new: None,
                    old: None,
                    compare,
                    owner,
                    scratch: std::ptr::null_mut(),
                };
            }
            ensure_columns(shape, (*rel).rd_att);
            StatementImages {
                json: Some(RowJson::projected((*rel).rd_att, |name| shape.keeps(name))),
                new: Reader::open(rel, new_rows),
                old: Reader::open(rel, old_rows),
                compare,
                owner,
                scratch: pg_sys::AllocSetContextCreateInternal(
                    pg_sys::CurrentMemoryContext,
                    c"pg_webhook shaped images".as_ptr(),
                    pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
                ),
            }
        }
    }

    /// The images of the chosen row `chosen` (after those asked for before); `None` for an
    /// UPDATE whose sent columns did not change under `skip_unchanged` (its event is skipped).
    /// The two images of an event are within `LARGEST_READABLE_IMAGES` together, or neither
    /// is kept (`row_json::within_limit`).
    ///
    /// # Safety
    /// The position is the subscription's query's over the transition tables `open` was given.
    pub unsafe fn next(&mut self, chosen: &Chosen) -> Option<Images> {
        let payload = chosen.payload.map(|p| Image::Json(p, None));
        let Some(json) = self.json.as_mut() else {
            return Some((payload, None));
        };
        let owner = Some(self.owner);
        // SAFETY: see the function contract; the images are rendered in `scratch` and those
        // sent copied into the current context before it is reset.
        unsafe {
            let target = pg_sys::MemoryContextSwitchTo(self.scratch);
            let record = (self.new.as_mut())
                .map(|r| r.image_at(chosen.position, json, owner, LARGEST_READABLE_IMAGES));
            // Compared whole: an old image cut short would never be the same as the new one.
            let room = match self.compare {
                true => LARGEST_READABLE_IMAGES,
                false => LARGEST_READABLE_IMAGES.saturating_sub(text_bytes(record)),
            };
            let old_record =
                (self.old.as_mut()).map(|r| r.image_at(chosen.position, json, owner, room));
            pg_sys::MemoryContextSwitchTo(target);
            let images = if self.compare && same(record, old_record) {
                None
            } else if let Some(payload) = payload {
                Some((Some(payload), None))
            } else {
                let (record, old_record) = within_limit(record, old_record);
                Some((copied(record), copied(old_record)))
            };
            pg_sys::MemoryContextReset(self.scratch);
            images
        }
    }

    /// Lets go of the transition tables' read slots and of the rendering memory.
    pub fn close(self) {
        for reader in [self.new, self.old].into_iter().flatten() {
            // SAFETY: the slot made in `Reader::open`, used by nothing else.
            unsafe { pg_sys::ExecDropSingleTupleTableSlot(reader.slot) };
        }
        if !self.scratch.is_null() {
            // SAFETY: the context made in `open`, holding nothing in use.
            unsafe { pg_sys::MemoryContextDelete(self.scratch) };
        }
    }
}

/// The records of a backfill chunk's chosen rows (as its query returned them: records of the
/// table's columns), each as capture sends it for an INSERT of the row, in the current memory
/// context. Rendered as the owner of `table` (the subscribed table), sandboxed, read-only and
/// rolled back; in the callback runner, which runs the code of the subscription's owner
/// (`subscriber`) only, so no function another role owns is run (`rendering_for`).
///
/// # Safety
/// Each datum is a record of the same row type.
pub unsafe fn backfill_images(
    rows: &[pg_sys::Datum],
    shape: &Shape,
    table: pg_sys::Oid,
    subscriber: pg_sys::Oid,
) -> Vec<Image> {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let table_owner = crate::privilege::table_owner(table);
    let render = || {
        crate::privilege::as_table_owner_read_only(table_owner, || {
            // SAFETY: records of one row type (see the function contract); the slot is
            // made for that type's descriptor and dropped here.
            unsafe {
                let header: pg_sys::HeapTupleHeader =
                    pg_sys::pg_detoast_datum(first.cast_mut_ptr()).cast();
                let datum = (*header).t_choice.t_datum;
                let desc =
                    pg_sys::lookup_rowtype_tupdesc_copy(datum.datum_typeid, datum.datum_typmod);
                ensure_columns(shape, desc);
                let mut json = RowJson::projected(desc, |name| shape.keeps(name));
                let slot = pg_sys::MakeSingleTupleTableSlot(desc, &pg_sys::TTSOpsVirtual);
                let images = rows
                    .iter()
                    .map(|row| {
                        pg_sys::ExecStoreHeapTupleDatum(*row, slot);
                        rendered(&mut json, slot, None, LARGEST_READABLE_IMAGES)
                    })
                    .collect();
                pg_sys::ExecDropSingleTupleTableSlot(slot);
                images
            }
        })
    };
    crate::analysis_guard::rendering_for(subscriber, render)
}

/// Fails unless every column the subscription's `columns` names is one of the rows' (described
/// by `desc`): one renamed or dropped since subscribing is an error, as it is in a filter, not
/// an event that silently lacks it.
unsafe fn ensure_columns(shape: &Shape, desc: pg_sys::TupleDesc) {
    let Some(columns) = &shape.columns else {
        return;
    };
    // SAFETY: a valid descriptor (see the callers).
    let attrs = unsafe { (*desc).attrs.as_slice((*desc).natts as usize) };
    let present = |name: &str| {
        attrs
            .iter()
            .any(|a| !a.attisdropped && pgrx::name_data_to_str(&a.attname) == name)
    };
    if let Some(missing) = columns.iter().find(|c| !present(c)) {
        pgrx::ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("column \"{missing}\" in the subscription's columns is not a column of the table any more"),
            "it was renamed or dropped after subscribing: subscribe again with the columns the table has now"
        );
    }
}

/// Reads one transition table forward, row by row.
struct Reader {
    store: *mut pg_sys::Tuplestorestate,
    slot: *mut pg_sys::TupleTableSlot,
    /// Where rows are read into: a store spilled to disk reads each into the current context,
    /// and the slot owns it until the next; the images are rendered in the queue's batch
    /// memory, reset once a batch is written, which freed the row the slot still held.
    memory: pg_sys::MemoryContext,
    /// Rows read so far.
    read: i64,
}

impl Reader {
    /// A reader of `store` from its first row (`None` without a store).
    unsafe fn open(rel: pg_sys::Relation, store: *mut pg_sys::Tuplestorestate) -> Option<Reader> {
        if store.is_null() {
            return None;
        }
        // SAFETY: the trigger's transition table and relation. The subscription's query read
        // the store through a read pointer of its own, which it left active: read from the
        // first again.
        unsafe {
            pg_sys::tuplestore_select_read_pointer(store, 0);
            pg_sys::tuplestore_rescan(store);
            let slot = pg_sys::MakeSingleTupleTableSlot((*rel).rd_att, &pg_sys::TTSOpsMinimalTuple);
            Some(Reader {
                store,
                slot,
                memory: pg_sys::CurrentMemoryContext,
                read: 0,
            })
        }
    }

    /// The image of the row at `position` (past the rows read so far), rendered as the writer
    /// of a table owned by `owner` (see `rendered`) within `room` bytes.
    unsafe fn image_at(
        &mut self,
        position: i64,
        json: &mut RowJson,
        owner: Option<pg_sys::Oid>,
        room: usize,
    ) -> Image {
        // SAFETY: the slot fits the store's rows.
        unsafe {
            while self.read < position {
                let current = pg_sys::MemoryContextSwitchTo(self.memory);
                let found = pg_sys::tuplestore_gettupleslot(self.store, true, false, self.slot);
                pg_sys::MemoryContextSwitchTo(current);
                if !found {
                    pgrx::error!(
                        "pg_webhook capture: the transition table has no row {position} (it has {})",
                        self.read
                    );
                }
                self.read += 1;
            }
            rendered(json, self.slot, owner, room)
        }
    }
}

/// The row in `slot` as `json` renders it within `room` bytes: at capture as the writer of a
/// table owned by `table_owner` (`RowJson::guarded_as_writer`); in a backfill (`None`) under
/// the guard the backfill set.
unsafe fn rendered(
    json: &mut RowJson,
    slot: *mut pg_sys::TupleTableSlot,
    table_owner: Option<pg_sys::Oid>,
    room: usize,
) -> Image {
    // SAFETY: the slot holds a row of the descriptor `json` was made for; the region owns
    // nothing that needs dropping.
    // (Its errors are named after the subscription where it is called: see `shaped_rows`.)
    unsafe {
        match table_owner {
            Some(owner) => {
                json.guarded_as_writer(owner, None, |r, json| json.row_within(r, slot, room))
            }
            None => json.guarded(None, |r, json| json.row_within(r, slot, room)),
        }
    }
}

/// `image` with its jsonb copied into the current memory context.
///
/// # Safety
/// A built image's datum is a jsonb value.
unsafe fn copied(image: Option<Image>) -> Option<Image> {
    image.map(|image| match image {
        // SAFETY: see the function contract.
        Image::Json(datum, growth) => unsafe {
            let copy = pg_sys::pg_detoast_datum_copy(datum.cast_mut_ptr());
            Image::Json(pg_sys::Datum::from(copy), growth)
        },
        omitted => omitted,
    })
}

/// Whether two images are equal as jsonb values (what `IS DISTINCT FROM` compares); an omitted
/// one is never equal to another (its event goes, to die with the reason).
fn same(a: Option<Image>, b: Option<Image>) -> bool {
    match (a, b) {
        // SAFETY: jsonb values rendered by `RowJson`, not toasted.
        (Some(Image::Json(a, _)), Some(Image::Json(b, _))) => unsafe {
            let a: *mut pg_sys::Jsonb = a.cast_mut_ptr();
            let b: *mut pg_sys::Jsonb = b.cast_mut_ptr();
            pg_sys::compareJsonbContainers(&raw mut (*a).root, &raw mut (*b).root) == 0
        },
        (None, None) => true,
        _ => false,
    }
}
