//! When an event's current series of attempts began, for the events whose schedule's attempts
//! are spent while their receiver asks to be tried again (`retry::past_the_count`).

use std::collections::HashMap;
use std::time::Duration;

use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::rows::column;

const SERIES_AGES: &str = include_str!("../../sql/worker/series_ages.sql");

/// How long ago the logged attempt `attempt` of each (event id, attempt) started, by event id;
/// none for an attempt not logged.
pub fn series_ages(events: &[(i64, i32)]) -> SpiResult<HashMap<i64, Duration>> {
    if events.is_empty() {
        return Ok(HashMap::new());
    }
    Spi::connect(|client| {
        let args = [column(events, |e| e.0), column(events, |e| e.1)];
        let mut ages = HashMap::new();
        for row in client.select(SERIES_AGES, None, &args)? {
            let (Some(id), Some(secs)) = (row.get::<i64>(1)?, row.get::<f64>(2)?) else {
                continue;
            };
            // A clock stepped back since: no time has passed.
            ages.insert(id, Duration::try_from_secs_f64(secs).unwrap_or_default());
        }
        Ok(ages)
    })
}
