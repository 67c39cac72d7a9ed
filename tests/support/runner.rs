//! Two owners whose callbacks share the callback runner: bob, whose callback each test writes,
//! and alice, whose callback notes every event it is called for.

use postgres::Client;

use super::cluster::Cluster;
use super::receiver::Receiver;
use super::{exec, subscribe};

/// Roles bob and alice (made in that order: bob's OID comes first), webhook_admin members who
/// may create in schema public. bob runs `bob_ddl` (which makes table `bobs` and his callback)
/// and subscribes `bobs` with `callback`; alice subscribes `alices` with `public.alice_notes`,
/// which sleeps `pause` seconds and notes the event's id and the time in `alice_ran (id, at)`.
/// Returns sessions of a superuser, alice and bob.
pub fn bob_and_alice(
    pg: &Cluster,
    rx: &Receiver,
    bob_ddl: &str,
    callback: &str,
    pause: f64,
) -> (Client, Client, Client) {
    let (su, [mut bob, mut alice]) = super::webhook_admins(pg, ["bob", "alice"]);
    exec(&mut bob, bob_ddl);
    subscribe(
        &mut bob,
        "bobs",
        "bobs",
        &rx.url("/bob"),
        &format!(", callback => '{callback}'"),
    );
    exec(
        &mut alice,
        &format!(
            "CREATE TABLE alices (id int PRIMARY KEY);
             CREATE TABLE alice_ran (id int, at timestamptz);
             CREATE FUNCTION public.alice_notes(event jsonb) RETURNS void LANGUAGE sql AS
                 $$ SELECT pg_catalog.pg_sleep({pause});
                    INSERT INTO public.alice_ran
                    VALUES ((event->'record'->>'id')::int, pg_catalog.clock_timestamp()) $$;"
        ),
    );
    subscribe(
        &mut alice,
        "alices",
        "alices",
        &rx.url("/alice"),
        ", callback => 'public.alice_notes(jsonb)'",
    );
    (su, alice, bob)
}
