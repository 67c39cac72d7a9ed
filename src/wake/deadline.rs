//! When the callback runner's watchdog fires (see `worker::watchdog`), published in the
//! runner's wake-up slot, so the launcher can tell a runner stuck where no interrupt reaches
//! it: the watchdog ends a runner whose callback or backfill chunk goes on after its cancel,
//! but only at the code's next interrupt check, and a call blocked in the kernel without one
//! (`dblink_connect` to a server that never answers) makes none. A runner still alive `STUCK`
//! after its watchdog fired is such a one; the launcher starts a fresh runner beside it (see
//! `worker::launcher`), so the other owners' callbacks and chunks go on.

use std::time::Duration;

use super::WORKERS;

/// How long after its watchdog fired a runner that is still alive is taken for stuck. Ending
/// a process takes milliseconds; this leaves room for a machine under load.
pub const STUCK: Duration = Duration::from_secs(10);

/// Publishes when the watchdog of worker `pid` fires (`after` from now), or that it is not
/// armed (`None`).
pub fn publish_watchdog(pid: i32, after: Option<Duration>) {
    let at = after.map_or(0, |after| {
        monotonic_ms().saturating_add(after.as_millis() as u64)
    });
    let mut workers = WORKERS.exclusive();
    if let Some(slot) = workers.slots.iter_mut().find(|s| s.pid == pid) {
        slot.watchdog_at = at;
    }
}

/// Whether worker `pid` is still registered `STUCK` after its watchdog fired.
pub fn stuck(pid: i32) -> bool {
    let now = monotonic_ms();
    (WORKERS.share().slots.iter())
        .any(|s| s.pid == pid && s.watchdog_at != 0 && stuck_at(s.watchdog_at) <= now)
}

/// How long until the next worker would be taken for stuck, if its call goes on (`None`:
/// none has its watchdog armed): the launcher looks then.
pub fn next_stuck_check() -> Option<Duration> {
    let next = (WORKERS.share().slots.iter())
        .filter(|s| s.pid != 0 && s.watchdog_at != 0)
        .map(|s| stuck_at(s.watchdog_at))
        .min()?;
    Some(Duration::from_millis(next.saturating_sub(monotonic_ms())))
}

fn stuck_at(watchdog_at: u64) -> u64 {
    watchdog_at.saturating_add(STUCK.as_millis() as u64)
}

/// Milliseconds on the system's monotonic clock, the same in every process (a wall-clock step
/// must not make a busy runner look stuck).
fn monotonic_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the current time into `now`; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1000)
        .saturating_add(now.tv_nsec as u64 / 1_000_000)
}
