use super::*;

fn status(code: u16) -> AttemptKind {
    AttemptKind::Status {
        code,
        retry_after: None,
    }
}

#[test]
fn any_2xx_is_delivered() {
    let p = RetryPolicy::default();
    for code in [200, 201, 202, 204, 299] {
        assert_eq!(judge(&p, 1, status(code), 0.5), Verdict::Delivered);
    }
}

#[test]
fn default_schedule_without_jitter_at_midpoint() {
    // The schedule the README and the subscribe() comment promise, written out: 5 s, 5 min,
    // 30 min, 2 h, 5 h, 10 h, 10 h, then dead after the 8th attempt.
    let p = RetryPolicy::default();
    let got: Vec<_> = (1..8).map(|n| judge(&p, n, status(500), 0.5)).collect();
    let want: Vec<_> = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
        .iter()
        .map(|s| Verdict::RetryIn(Duration::from_secs(*s)))
        .collect();
    assert_eq!(got, want);
    assert_eq!(judge(&p, 8, status(500), 0.5), Verdict::Dead);
    assert_eq!(p.max_attempts(), 8);
}

#[test]
fn jitter_stays_within_twenty_percent() {
    let p = RetryPolicy::default();
    assert_eq!(
        judge(&p, 1, AttemptKind::TransportError, 0.0),
        Verdict::RetryIn(Duration::from_secs(4))
    );
    assert_eq!(
        judge(&p, 1, AttemptKind::TransportError, 1.0),
        Verdict::RetryIn(Duration::from_secs(6))
    );
    for _ in 0..1000 {
        let u = jitter_unit();
        assert!((0.0..1.0).contains(&u));
    }
}

#[test]
fn redirects_and_client_errors_are_retried_like_failures() {
    let p = RetryPolicy::default();
    for code in [301, 302, 400, 404, 410, 500, 502] {
        assert!(matches!(
            judge(&p, 1, status(code), 0.5),
            Verdict::RetryIn(_)
        ));
    }
}

#[test]
fn retry_after_is_honoured_on_429_and_503_only() {
    let p = RetryPolicy::default();
    let ra = |code| AttemptKind::Status {
        code,
        retry_after: Some(Duration::from_secs(42)),
    };
    assert_eq!(
        judge(&p, 1, ra(429), 0.5),
        Verdict::RetryIn(Duration::from_secs(42))
    );
    assert_eq!(
        judge(&p, 3, ra(503), 0.5),
        Verdict::RetryIn(Duration::from_secs(42))
    );
    assert_eq!(
        judge(&p, 1, ra(500), 0.5),
        Verdict::RetryIn(Duration::from_secs(5))
    );
    let huge = AttemptKind::Status {
        code: 429,
        retry_after: Some(Duration::from_secs(10 * 24 * 3600)),
    };
    assert_eq!(judge(&p, 1, huge, 0.5), Verdict::RetryIn(MAX_RETRY_AFTER));
    // Past the maximum, Retry-After leaves it to how long the series has run.
    assert_eq!(
        judge(&p, 8, ra(429), 0.5),
        Verdict::Spent(Duration::from_secs(42))
    );
    assert_eq!(judge(&p, 8, ra(500), 0.5), Verdict::Dead);
}

#[test]
fn a_short_retry_after_is_taken_as_given_up_to_the_last_attempt() {
    // A 503 with Retry-After: 1 after attempt 7 of 8 brings the 8th in a second (jitter 0.5:
    // none); after the 8th the attempts are spent and the series' age decides.
    let p = RetryPolicy::default();
    let soon = AttemptKind::Status {
        code: 503,
        retry_after: Some(Duration::from_secs(1)),
    };
    assert_eq!(
        judge(&p, 7, soon, 0.5),
        Verdict::RetryIn(Duration::from_secs(1))
    );
    assert_eq!(
        judge(&p, 8, soon, 0.5),
        Verdict::Spent(Duration::from_secs(1))
    );
    // One more per point at most (7 of them), whatever the clock says of the series' age.
    assert_eq!(
        judge(&p, 14, soon, 0.5),
        Verdict::Spent(Duration::from_secs(1))
    );
    assert_eq!(judge(&p, 15, soon, 0.5), Verdict::Dead);
}

#[test]
fn a_clock_stepped_back_still_spreads_the_extra_attempts_over_the_points() {
    // The series' age reads 0 at every extra attempt: each still waits for a later point
    // (5 s, 5 min 5 s, 35 min 5 s, ...), and there is none after the 7th.
    let p = RetryPolicy::default();
    let secs = Duration::from_secs;
    let waits: Vec<Option<Duration>> = (0..8)
        .map(|extra| past_the_count(&p, Duration::ZERO, extra, secs(1), 0.0))
        .collect();
    let points = [5, 305, 2_105, 9_305, 27_305, 63_305, 99_305];
    let want: Vec<Option<Duration>> = (points.iter().map(|s| Some(secs(*s))))
        .chain([None])
        .collect();
    assert_eq!(waits, want);
}

#[test]
fn the_wait_to_a_point_is_jittered() {
    // 5 min 5 s less 7 s to the next point, up to 20 % later (never earlier: the attempt
    // would find the same point next again).
    let p = RetryPolicy::default();
    let to_point =
        |unit| past_the_count(&p, Duration::from_secs(7), 0, Duration::from_secs(1), unit);
    assert_eq!(to_point(0.0), Some(Duration::from_secs(298)));
    assert_eq!(to_point(1.0), Some(Duration::from_secs(298).mul_f64(1.2)));
}

#[test]
fn spent_attempts_go_on_at_the_schedules_points_until_its_last() {
    // The default schedule's points: 5 s, 5 min 5 s, 35 min 5 s, 2 h 35 min 5 s, 7 h 35 min 5 s,
    // 17 h 35 min 5 s, 27 h 35 min 5 s after the first attempt.
    let p = RetryPolicy::default();
    let secs = Duration::from_secs;
    let one = secs(1);
    // 8 attempts in 7 s: the next goes at the point after 7 s, 5 min 5 s.
    assert_eq!(
        past_the_count(&p, secs(7), 0, one, 0.0),
        Some(secs(305 - 7))
    );
    // Exactly at a point: the one after it.
    assert_eq!(
        past_the_count(&p, secs(305), 0, one, 0.0),
        Some(secs(2_105 - 305))
    );
    // The receiver asks for longer than the next point: as asked.
    assert_eq!(
        past_the_count(&p, secs(7), 0, secs(600), 0.0),
        Some(secs(600))
    );
    // Before the last point, the last; at or past it, the series is over.
    let last = 99_305;
    assert_eq!(
        past_the_count(&p, secs(last - 10), 0, one, 0.0),
        Some(secs(10))
    );
    assert_eq!(past_the_count(&p, secs(last), 0, one, 0.0), None);
    assert_eq!(past_the_count(&p, secs(last + 3_600), 0, one, 0.0), None);
}

#[test]
fn a_single_attempt_has_no_points_to_go_on_at() {
    let p = RetryPolicy::new(None, Some(1)).unwrap();
    assert_eq!(
        past_the_count(&p, Duration::ZERO, 0, Duration::from_secs(1), 0.0),
        None
    );
    // A custom schedule repeats its last delay up to max_attempts: points 1 s, 3 s, 5 s.
    let p = RetryPolicy::new(Some(&[1_000, 2_000]), Some(4)).unwrap();
    let ms = Duration::from_millis;
    assert_eq!(
        past_the_count(&p, ms(3_500), 0, ms(1), 0.0),
        Some(ms(1_500))
    );
    assert_eq!(past_the_count(&p, ms(5_000), 0, ms(1), 0.0), None);
}

#[test]
fn a_refused_destination_is_retried_on_the_schedule_then_dies() {
    let p = RetryPolicy::default();
    assert_eq!(
        judge(&p, 1, AttemptKind::Refused, 0.5),
        Verdict::RetryIn(Duration::from_secs(5))
    );
    assert_eq!(judge(&p, 8, AttemptKind::Refused, 0.5), Verdict::Dead);
}

#[test]
fn custom_schedule_repeats_its_last_delay() {
    let p = RetryPolicy::new(Some(&[100, 2000]), Some(5)).unwrap();
    let delays: Vec<_> = (1..5)
        .map(|n| p.base_delay(n).unwrap().as_millis())
        .collect();
    assert_eq!(delays, vec![100, 2000, 2000, 2000]);
    assert_eq!(p.base_delay(5), None);
    let implied = RetryPolicy::new(Some(&[10, 20, 30]), None).unwrap();
    assert_eq!(implied.max_attempts(), 4);
    assert_eq!(RetryPolicy::new(None, Some(1)).unwrap().base_delay(1), None);
}

#[test]
fn bad_schedules_are_refused_with_the_reason() {
    assert_eq!(
        RetryPolicy::new(Some(&[]), None),
        Err(PolicyError::EmptySchedule)
    );
    assert_eq!(
        RetryPolicy::new(None, Some(0)),
        Err(PolicyError::MaxAttempts(0))
    );
    assert_eq!(
        RetryPolicy::new(None, Some(101)),
        Err(PolicyError::MaxAttempts(101))
    );
    assert_eq!(
        RetryPolicy::new(Some(&[1000; 100]), None),
        Err(PolicyError::ScheduleTooLong(100))
    );
    assert_eq!(
        RetryPolicy::new(Some(&[1000; 99]), None).map(|p| p.max_attempts()),
        Ok(100)
    );
    assert_eq!(
        RetryPolicy::new(Some(&[1000; 150]), Some(100)).map(|p| p.max_attempts()),
        Ok(100)
    );
    let e = RetryPolicy::new(Some(&[5, -1]), None).unwrap_err();
    assert_eq!(
        e,
        PolicyError::DelayOutOfRange {
            index: 1,
            delay_ms: -1
        }
    );
    assert!(e.to_string().starts_with("retry_schedule[2]"));
}

#[test]
fn retry_after_parses_seconds_and_http_dates() {
    let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
    assert_eq!(
        parse_retry_after(" 120 ", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-5", now), None);
}

#[test]
fn a_worker_that_keeps_failing_to_start_waits_longer_each_time_up_to_30_s() {
    let delays: Vec<u64> = [1, 2, 3, 4, 5, 6, 7, 1000, u32::MAX]
        .into_iter()
        .map(|n| restart_delay(n).as_secs())
        .collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30, 30]);
    assert_eq!(restart_delay(0), Duration::from_secs(1));
}
