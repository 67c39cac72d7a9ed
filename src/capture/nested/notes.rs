//! What ids each capture of an ordered subscription took, under which frame (see `nested`),
//! and moving those of the statements nested in a statement's AFTER triggers after its own.

use std::cell::RefCell;

use super::Place;
use crate::capture::queue_writer::QueueWriter;

/// Ids `first..=last` a capture took for `subscription` under frame `frame`.
#[derive(Clone, Copy)]
struct Taken {
    subscription: i32,
    frame: u64,
    first: i64,
    last: i64,
    /// How many COPY FROMs were copying their rows when it was made: one made while the COPY
    /// whose frame it is under copied (by what its BEFORE triggers ran) stays before that
    /// COPY's events.
    copying: u32,
}

thread_local! {
    /// In the order they were made.
    static TAKEN: RefCell<Vec<Taken>> = const { RefCell::new(Vec::new()) };
}

/// After `writer` queued a statement's events for ordered `subscription` at `place`: moves the
/// events of the statements nested in its AFTER triggers after them, and notes the ids taken,
/// for a statement it is itself nested in.
pub fn follow(writer: &mut QueueWriter, place: Place, subscription: i32) -> Result<(), String> {
    let Some((first, last)) = writer.ids_taken() else {
        return Ok(());
    };
    if place.frame == 0 {
        // No statement encloses this one's: nothing can need to move these.
        return Ok(());
    }
    if place.after != 0 {
        let nested = if place.own {
            nested_in(place, subscription)
        } else {
            ran_after(place.after, subscription)
        };
        if let Some(frame) = nested.iter().map(|n| n.frame).min() {
            let ranges: Vec<(i64, i64)> = nested.iter().map(|n| (n.first, n.last)).collect();
            // Noted as one, under a frame opened after this statement's, as they were.
            if let Some((first, last)) = writer.move_after_own(&ranges)? {
                note(subscription, frame, first, last);
            }
        }
    }
    note(subscription, place.frame, first, last);
    Ok(())
}

/// Takes out the notes of `subscription` made under frames opened after `place.after` (the
/// place's own frame, or for the frame of a library loaded mid-statement the one before it; for
/// a COPY's, those not made while it copied: with no more COPYs copying than when it opened).
///
/// Notes are kept in the order they were made, so those made before a frame still open was
/// opened (all under older frames) come before those made since (under it or newer ones):
/// only the latter are read, and a statement nested in a trigger that runs many does not
/// read its siblings' notes.
fn nested_in(place: Place, subscription: i32) -> Vec<Taken> {
    TAKEN.with(|t| {
        let mut taken = t.borrow_mut();
        let since = taken.partition_point(|n| n.frame < place.after);
        let (nested, kept): (Vec<Taken>, Vec<Taken>) = taken.drain(since..).partition(|n| {
            n.subscription == subscription
                && n.frame > place.after
                && place.copy.is_none_or(|copies| n.copying <= copies)
        });
        taken.extend(kept);
        nested
    })
}

/// Takes out the notes of `subscription` made under frames opened after serial `after` (a
/// cascade's: the notes made since are not all under newer frames, so all are read).
fn ran_after(after: u64, subscription: i32) -> Vec<Taken> {
    TAKEN.with(|t| {
        let mut taken = t.borrow_mut();
        let (nested, kept): (Vec<Taken>, Vec<Taken>) = taken
            .drain(..)
            .partition(|n| n.subscription == subscription && n.frame > after);
        *taken = kept;
        nested
    })
}

fn note(subscription: i32, frame: u64, first: i64, last: i64) {
    let taken = Taken {
        subscription,
        frame,
        first,
        last,
        copying: super::copies_running(),
    };
    TAKEN.with(|t| t.borrow_mut().push(taken));
}

/// Forgets every note (the outermost frame closed, or the transaction ended).
pub(super) fn clear() {
    TAKEN.with(|t| t.borrow_mut().clear());
}
