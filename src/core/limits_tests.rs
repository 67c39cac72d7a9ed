//! Tests of limits.rs.
use super::*;

/// Admits a new event of subscription 1 with nothing in flight.
fn new_event(limits: &mut Limits, spec: &LimitSpec, now: Instant) -> Admission {
    limits.admit(1, spec, 0, 0, now, Arrival::New)
}

fn target(max_in_flight: Option<usize>, rate_limit: Option<f64>) -> LimitSpec {
    LimitSpec {
        max_in_flight,
        rate_limit,
    }
}

#[test]
fn concurrency_limit_turns_away_the_excess() {
    let mut limits = Limits::default();
    let t = target(Some(2), None);
    let now = Instant::now();
    assert_eq!(
        limits.admit(1, &t, 1, 0, now, Arrival::New),
        Admission::Start
    );
    assert_eq!(
        limits.admit(1, &t, 2, 0, now, Arrival::New),
        Admission::Full(BUSY_RETRY)
    );
    assert_eq!(
        limits.admit(1, &t, 2, 4, now, Arrival::New),
        Admission::Full(BUSY_RETRY * 3)
    );
}

#[test]
fn rate_limit_spaces_events_and_gives_each_turned_away_a_slot_of_its_own() {
    let mut limits = Limits::default();
    let t = target(None, Some(10.0));
    let now = Instant::now();
    let ms = Duration::from_millis;
    let (start, later) = (Admission::Start, Admission::Later);
    use Arrival::{Due, New};
    // (when, in ms from now; how the event comes; what it gets)
    let steps = [
        (0, New, start),
        // Turned away, each goes to the slot after the last one given out: 100, 200, 300 ms,
        // in this claim or the next (however many a claim turned away).
        (0, New, later(ms(100))),
        (0, New, later(ms(200))),
        (1, Due, later(ms(299))),
        // The first one given out comes due at its slot and starts; a new event then would
        // take the next, given out already: it goes after the last.
        (100, Due, start),
        (100, New, later(ms(300))),
        // Claimed 30 ms after its slot, the next still starts, and the one after keeps its
        // slot: the lateness does not move the slots.
        (230, Due, start),
        (300, Due, start),
        // Too early (more than the slack before the slot), a due event goes after the last
        // given out; up to the slack early it starts, and the slot after stays where it was.
        (340, Due, later(ms(160))),
        (365, Due, start),
        (365, New, later(ms(235))),
    ];
    for (n, (at, arrival, expected)) in steps.into_iter().enumerate() {
        let got = limits.admit(1, &t, 0, 0, now + ms(at), arrival);
        assert_eq!(got, expected, "step {n}: {arrival:?} at {at} ms");
    }
    // Another subscription has its own slots.
    assert_eq!(limits.admit(2, &t, 0, 0, now, New), Admission::Start);
}

#[test]
fn with_no_slots_given_out_a_new_event_takes_the_free_one() {
    let mut limits = Limits::default();
    let t = target(None, Some(10.0));
    let now = Instant::now();
    assert_eq!(
        limits.admit(1, &t, 0, 0, now, Arrival::New),
        Admission::Start
    );
    let next = now + Duration::from_millis(100);
    assert_eq!(
        limits.admit(1, &t, 0, 0, next, Arrival::New),
        Admission::Start
    );
    // After a quiet spell the next slot counts from at most 50 ms back (half an interval
    // here): one gap of 50 ms, then 100 ms again.
    let quiet = now + Duration::from_secs(10);
    assert_eq!(
        limits.admit(1, &t, 0, 0, quiet, Arrival::New),
        Admission::Start
    );
    assert_eq!(
        limits.wait_for_slot(1, quiet),
        Some(quiet + Duration::from_millis(50))
    );
}

#[test]
fn an_ordered_head_over_the_rate_waits_for_the_free_slot_without_taking_one() {
    let mut limits = Limits::default();
    let t = target(None, Some(10.0));
    let now = Instant::now();
    let ms = Duration::from_millis;
    assert_eq!(
        limits.admit(1, &t, 0, 0, now, Arrival::Head),
        Admission::Start
    );
    for _ in 0..3 {
        assert_eq!(
            limits.admit(1, &t, 0, 0, now, Arrival::Head),
            Admission::Later(ms(100))
        );
    }
    let next = now + ms(100);
    assert_eq!(
        limits.admit(1, &t, 0, 0, next, Arrival::Head),
        Admission::Start
    );
}

#[test]
fn forgetting_a_subscriptions_slots_starts_its_rate_afresh() {
    let mut limits = Limits::default();
    let t = target(None, Some(10.0));
    let now = Instant::now();
    let ms = Duration::from_millis;
    assert_eq!(
        limits.admit(1, &t, 0, 0, now, Arrival::New),
        Admission::Start
    );
    for n in 1..=5 {
        assert_eq!(
            limits.admit(1, &t, 0, 0, now, Arrival::New),
            Admission::Later(ms(100 * n))
        );
    }
    limits.forget(1);
    assert_eq!(
        limits.admit(1, &t, 0, 0, now, Arrival::New),
        Admission::Start
    );
}

#[test]
fn unlimited_subscriptions_always_start() {
    let mut limits = Limits::default();
    let t = target(None, None);
    assert_eq!(
        limits.admit(1, &t, 10_000, 10_000, Instant::now(), Arrival::New),
        Admission::Start
    );
}

#[test]
fn extreme_rates_neither_panic_nor_wait_forever() {
    let now = Instant::now();
    for rate in [1e-300, f64::MIN_POSITIVE, 5e-324, 1e-9] {
        let mut limits = Limits::default();
        let t = target(None, Some(rate));
        assert_eq!(new_event(&mut limits, &t, now), Admission::Start, "{rate}");
        // Treated as the slowest allowed rate: one event per 1000 s, and never a wait
        // beyond a day however many are turned away.
        assert_eq!(
            new_event(&mut limits, &t, now),
            Admission::Later(Duration::from_secs(1000))
        );
        for _ in 0..100 {
            new_event(&mut limits, &t, now);
        }
        assert_eq!(
            new_event(&mut limits, &t, now),
            Admission::Later(Duration::from_secs(86_400))
        );
    }
    for rate in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
        let mut limits = Limits::default();
        let t = target(None, Some(rate));
        assert_eq!(new_event(&mut limits, &t, now), Admission::Start, "{rate}");
        assert_eq!(new_event(&mut limits, &t, now), Admission::Start, "{rate}");
    }
    let mut limits = Limits::default();
    let t = target(None, Some(1e300));
    assert_eq!(new_event(&mut limits, &t, now), Admission::Start);
    assert_eq!(
        new_event(&mut limits, &t, now),
        Admission::Later(Duration::from_micros(10))
    );
    let busy = target(Some(1), None);
    assert_eq!(
        limits.admit(2, &busy, 1, usize::MAX, now, Arrival::New),
        Admission::Full(Duration::from_secs(86_400))
    );
}

#[test]
fn a_request_of_several_events_takes_a_slot_for_each() {
    let mut limits = Limits::default();
    let spec = target(None, Some(2.0));
    let now = Instant::now();
    assert_eq!(limits.wait_for_slot(7, now), None);
    limits.take_slots(7, &spec, 3, now);
    // 3 events at 2 a second: the next may start 1.5 s later.
    assert_eq!(
        limits.wait_for_slot(7, now),
        Some(now + Duration::from_millis(1500))
    );
    assert_eq!(
        limits.wait_for_slot(7, now + Duration::from_millis(1500)),
        None
    );
    // Without a rate nothing is taken.
    limits.take_slots(8, &target(Some(4), None), 3, now);
    assert_eq!(limits.wait_for_slot(8, now), None);
}

#[test]
fn slots_taken_back_from_events_not_put_back_go_to_the_next_ones() {
    // Events put back at 100, 200 and 300 ms, the last two of which were not put back after
    // all (their rows held): the next one turned away goes at 300 ms, not 400; with none put
    // back, at 100 ms again.
    let mut limits = Limits::default();
    let t = target(None, Some(10.0));
    let now = Instant::now();
    let ms = Duration::from_millis;
    assert_eq!(new_event(&mut limits, &t, now), Admission::Start);
    for wait in [100, 200, 300] {
        assert_eq!(new_event(&mut limits, &t, now), Admission::Later(ms(wait)));
    }
    limits.take_back_given_out(1, Some(now + ms(200)));
    assert_eq!(new_event(&mut limits, &t, now), Admission::Later(ms(300)));
    limits.take_back_given_out(1, Some(now + ms(500)));
    assert_eq!(new_event(&mut limits, &t, now), Admission::Later(ms(400)));
    limits.take_back_given_out(1, None);
    assert_eq!(new_event(&mut limits, &t, now), Admission::Later(ms(100)));
}
