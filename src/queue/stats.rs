//! Whether the planner still knows how large the queue is.

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::Statements;

impl Statements {
    /// Whether the planner takes the queue for smaller than a page of `page` events just read
    /// (see sql/worker/queue_stats_stale.sql). Prepared and run within the claim that read the
    /// page: a claim of its own for it, its query planned afresh, took a fourteenth of the
    /// worker's time when draining one event per request (it ran about every other claim).
    pub fn queue_stats_stale(&self, page: usize) -> SpiResult<bool> {
        Spi::connect(|client| {
            let stale = client
                .select(&self.stats_stale, Some(1), &[(page as f64).into()])?
                .first()
                .get_one::<bool>()?;
            Ok(stale == Some(true))
        })
    }
}
