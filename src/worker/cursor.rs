//! How far the worker has read the new events, so it never re-walks what it has already seen.
//!
//! New events are read in (txid, id) order. Delivered events leave dead index entries behind;
//! scanning from the start every time would walk all of them again. But a reader cannot simply
//! continue after the last key it saw: a transaction with a smaller txid may commit later. The
//! snapshot horizon (`xmin`) bounds that: every transaction below it has finished, so a pass may
//! restart from the horizon observed when the previous pass began.

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Where the next pass starts: no unseen event has a txid below it.
    floor: i64,
    /// The horizon observed when the current pass began (the next pass's floor).
    pass_horizon: i64,
    /// Last key read in the current pass; `None` between passes.
    resume: Option<(i64, i64)>,
}

impl Cursor {
    /// The key to read after. Starting a pass asks for the current horizon.
    pub fn position<E>(
        &mut self,
        horizon: impl FnOnce() -> Result<i64, E>,
    ) -> Result<(i64, i64), E> {
        if let Some(at) = self.resume {
            return Ok(at);
        }
        self.pass_horizon = horizon()?;
        let at = (self.floor, 0);
        self.resume = Some(at);
        Ok(at)
    }

    /// Records that a page was read up to `last` (if anything came back) and whether it was
    /// short, which ends the pass.
    pub fn page_read(&mut self, last: Option<(i64, i64)>, short: bool) {
        if let Some(key) = last {
            self.resume = Some(key);
        }
        if short {
            self.floor = self.pass_horizon;
            self.resume = None;
        }
    }

    /// Forget everything: the next pass reads from the start (after a failure that left events
    /// behind the cursor).
    pub fn reset(&mut self) {
        *self = Cursor::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(c: &mut Cursor, horizon: i64) -> (i64, i64) {
        c.position(|| Ok::<_, ()>(horizon)).unwrap()
    }

    #[test]
    fn a_short_page_ends_the_pass_at_the_horizon_seen_when_it_began() {
        let mut c = Cursor::default();
        assert_eq!(pos(&mut c, 100), (0, 0));
        c.page_read(Some((90, 7)), true);
        // The next pass starts at the horizon observed at the start of the last one, not at
        // the last key: transaction 95 may still commit.
        assert_eq!(pos(&mut c, 120), (100, 0));
        c.page_read(None, true);
        assert_eq!(pos(&mut c, 130), (120, 0));
    }

    #[test]
    fn full_pages_continue_from_the_last_key() {
        let mut c = Cursor::default();
        assert_eq!(pos(&mut c, 50), (0, 0));
        c.page_read(Some((40, 10)), false);
        assert_eq!(
            pos(&mut c, 999),
            (40, 10),
            "paging does not start a new pass"
        );
        c.page_read(Some((45, 20)), false);
        assert_eq!(pos(&mut c, 999), (45, 20));
        c.page_read(Some((48, 30)), true);
        assert_eq!(pos(&mut c, 60), (50, 0));
    }

    #[test]
    fn reset_reads_from_the_start() {
        let mut c = Cursor::default();
        pos(&mut c, 10);
        c.page_read(None, true);
        c.reset();
        assert_eq!(pos(&mut c, 20), (0, 0));
    }

    #[test]
    fn a_failing_horizon_leaves_the_cursor_unchanged() {
        let mut c = Cursor::default();
        assert!(c.position(|| Err::<i64, _>("boom")).is_err());
        assert_eq!(c, Cursor::default());
    }
}
