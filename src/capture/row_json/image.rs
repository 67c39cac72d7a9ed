//! A row's image, and the two images of one event together.

use pg_webhook_core::payload::LARGEST_READABLE_IMAGES;
use pgrx::pg_sys;

use crate::unguarded;

/// A row's image: its jsonb, or only its size when it is larger than any worker reads
/// (`LARGEST_READABLE_IMAGES`), so its event goes without it, to die with the reason. Such an
/// image is not built: it would cost the writer the time and memory of a value no one reads,
/// and past jsonb's limits (256 MiB) the write itself would fail.
#[derive(Clone, Copy)]
pub enum Image {
    /// A jsonb value, and how many bytes its numbers grow by when written out as text (see
    /// capture/text_size.rs), counted as it was rendered; `None` for a value SQL made (a
    /// `payload`, a backfill's), which the queue writer counts.
    Json(pg_sys::Datum, Option<usize>),
    /// About this many bytes as text (the keys and values it would hold, numbers written out;
    /// values not rendered counted by their size as stored).
    Omitted(usize),
}

/// The bytes of `image` as text, as far as they are known without reading it: a rendered one
/// counts its numbers written out; one SQL made (a payload), its size as jsonb.
pub fn text_bytes(image: Option<Image>) -> usize {
    match image {
        // SAFETY: a jsonb datum (in memory: rendered, or copied out of its query).
        Some(Image::Json(datum, growth)) => {
            unsafe { unguarded::toast_raw_datum_size(datum) }.saturating_add(growth.unwrap_or(0))
        }
        Some(Image::Omitted(bytes)) => bytes,
        None => 0,
    }
}

/// An event's images (`record`, `old_record`), unless together they are over
/// `LARGEST_READABLE_IMAGES`: then only their sizes, and the images built are freed. Such an
/// event dies unread whatever it holds, and an UPDATE of a row of 150 MB made, stored and
/// kept in the writer's memory 300 MB of images that no worker would read.
///
/// # Safety
/// Each image's datum is a chunk of its own (rendered, or a copy), used by nothing else.
pub unsafe fn within_limit(
    record: Option<Image>,
    old_record: Option<Image>,
) -> (Option<Image>, Option<Image>) {
    if text_bytes(record).saturating_add(text_bytes(old_record)) <= LARGEST_READABLE_IMAGES {
        return (record, old_record);
    }
    let omitted = |image: Option<Image>| {
        let bytes = text_bytes(image);
        image.map(|image| {
            if let Image::Json(datum, _) = image {
                // SAFETY: see the function contract.
                unsafe { pg_sys::pfree(datum.cast_mut_ptr()) };
            }
            Image::Omitted(bytes)
        })
    };
    (omitted(record), omitted(old_record))
}
