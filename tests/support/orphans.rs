//! What the `webhook.set_owner()` tests (tests/owner_*.rs) start from: alice's team around table
//! `t`, and her subscription of it left an orphan when her role is dropped.

use super::cluster::{wait_until, Cluster};
use super::receiver::Receiver;
use super::{exec, subscribe, text, WAIT};

/// Table `t (id int, who text)`; alice and bob are webhook_admin members who may read it and
/// add triggers to it, carol is one who may not read it; dave owns the callback `public.cb(jsonb)`
/// and the function `m.ok(int)`, which anyone may run.
pub fn team(pg: &Cluster) -> postgres::Client {
    let mut su = pg.client_with_extension();
    exec(
        &mut su,
        "CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE carol LOGIN; CREATE ROLE dave;
         GRANT webhook_admin TO alice, bob, carol;
         CREATE TABLE t (id int PRIMARY KEY, who text);
         GRANT SELECT, TRIGGER ON t TO alice, bob;
         CREATE FUNCTION public.cb(jsonb) RETURNS void LANGUAGE sql AS 'SELECT';
         ALTER FUNCTION public.cb(jsonb) OWNER TO dave;
         CREATE SCHEMA m AUTHORIZATION dave; GRANT USAGE ON SCHEMA m TO PUBLIC;
         CREATE FUNCTION m.ok(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT true';
         ALTER FUNCTION m.ok(int) OWNER TO dave;",
    );
    su
}

pub fn status(db: &mut postgres::Client) -> String {
    text(
        db,
        "SELECT status FROM webhook.subscriptions WHERE name = 't'",
    )
    .unwrap_or_default()
}

/// alice subscribes `t` (with `extra`), a writer session runs `write`, and alice leaves: her
/// role is dropped, and the worker disables the subscription. Returns a superuser's session and
/// the writer's.
pub fn orphaned(
    pg: &Cluster,
    rx: &Receiver,
    extra: &str,
    write: &str,
) -> (postgres::Client, postgres::Client) {
    orphaned_after(pg, team(pg), rx, extra, write)
}

/// `orphaned`, in a team set up already (`su` its superuser's session).
pub fn orphaned_after(
    pg: &Cluster,
    mut su: postgres::Client,
    rx: &Receiver,
    extra: &str,
    write: &str,
) -> (postgres::Client, postgres::Client) {
    let mut alice = pg.connect_as("postgres", "alice");
    subscribe(&mut alice, "t", "t", &rx.url("/t"), extra);
    drop(alice);
    let mut writer = pg.connect("postgres");
    exec(&mut writer, write);
    exec(
        &mut su,
        "REVOKE ALL ON t FROM alice; REVOKE webhook_admin FROM alice; DROP ROLE alice;",
    );
    wait_until(WAIT, "the subscription to be disabled", || {
        status(&mut su) == "disabled"
    });
    (su, writer)
}
