//! An owner whose turns end with the runner sits out longer each time, even with a harmless
//! turn between two such (see src/worker/callbacks/turn.rs).

mod support;

use std::time::Duration;

use support::cluster::{wait_until, Cluster};
use support::receiver::Receiver;
use support::{count, exec};

#[test]
fn a_harmless_turn_between_two_ended_with_the_runner_does_not_shorten_the_second_penalty() {
    // A turn that ended normally (the runner handed over) reset the owner's turns ended with
    // the runner "in a row": bob, with a harmless callback between two that ignore their
    // cancel, sat out 10 s after each, and cost the others callback_timeout + 5 s every 10 s
    // or so for as long as he liked.
    let pg = Cluster::start(&[
        "pg_webhook.poll_interval = '100ms'",
        "pg_webhook.callback_timeout = '200ms'",
    ]);
    let rx = Receiver::start();
    // bob's callback ignores its cancel the first time it runs for an odd row (a sequence,
    // which a rollback does not undo, counts the starts), and notes when it ran otherwise.
    let (mut su, mut alice, mut bob) = support::runner::bob_and_alice(
        &pg,
        &rx,
        "CREATE TABLE bobs (id int PRIMARY KEY);
         CREATE TABLE bob_ran (id int, at timestamptz);
         CREATE SEQUENCE public.h1; CREATE SEQUENCE public.h3;
         CREATE FUNCTION public.sometimes(e jsonb) RETURNS void LANGUAGE plpgsql AS $$
         DECLARE id int := (e->'record'->>'id')::int;
         BEGIN
             IF id % 2 = 1 AND pg_catalog.nextval(('public.h' || id)::regclass) = 1 THEN
                 LOOP
                     BEGIN
                         PERFORM pg_catalog.pg_sleep(0.05);
                     EXCEPTION WHEN query_canceled THEN
                         NULL;
                     END;
                 END LOOP;
             END IF;
             INSERT INTO public.bob_ran VALUES (id, pg_catalog.clock_timestamp());
         END $$;",
        "public.sometimes(jsonb)",
        0.1,
    );
    let bob_ran = |su: &mut postgres::Client, id: i32| {
        count(su, &format!("SELECT count(*) FROM bob_ran WHERE id = {id}")) == 1
    };
    // bob's first turn ends with its runner (10 s out), then his callback runs again, harmless.
    exec(&mut bob, "INSERT INTO bobs VALUES (1)");
    wait_until(support::WAIT, "bob's first callback", || {
        bob_ran(&mut su, 1)
    });
    // A harmless turn of his, handed over to alice's.
    exec(&mut bob, "INSERT INTO bobs VALUES (2)");
    wait_until(support::WAIT, "bob's second callback", || {
        bob_ran(&mut su, 2)
    });
    exec(&mut alice, "INSERT INTO alices VALUES (0)");
    wait_until(support::WAIT, "alice's first callback", || {
        count(&mut su, "SELECT count(*) FROM alice_ran") == 1
    });
    // His next turn ends with its runner again, while 12 s of alice's callbacks wait: more
    // than the 10 s a penalty not doubled would keep him out, and 8 s short of the 20 s
    // it keeps him out, for the runner's own time per callback on a loaded machine.
    exec(&mut bob, "INSERT INTO bobs VALUES (3)");
    wait_until(support::WAIT, "bob's third callback to start", || {
        count(
            &mut su,
            "SELECT count(*) FROM webhook._callback_queue WHERE starts > 0",
        ) == 1
    });
    exec(
        &mut alice,
        "INSERT INTO alices SELECT generate_series(1, 120)",
    );
    exec(&mut bob, "INSERT INTO bobs VALUES (4)");
    wait_until(Duration::from_secs(90), "everyone's callbacks", || {
        bob_ran(&mut su, 4) && count(&mut su, "SELECT count(*) FROM alice_ran") == 121
    });
    // 20 s out this time: alice's 12 s of callbacks all went first.
    assert_eq!(
        count(
            &mut su,
            "SELECT count(*) FROM alice_ran
              WHERE at > (SELECT at FROM bob_ran WHERE id = 4)"
        ),
        0,
        "bob's callback ran before alice's were done: he sat out only 10 s again"
    );
}
