//! mallory: a `webhook_admin` member beside alice's subscription, with a table and a function
//! of her own, for the attacks tests.

use super::cluster::Cluster;
use super::receiver::Receiver;
use super::{exec, subscribe};

/// alice subscribes her table; mallory, another webhook_admin member, owns `mine` and a
/// function that would make her superuser if it ran as the bootstrap superuser.
pub fn victim_and_mallory(
    pg: &Cluster,
    rx: &Receiver,
) -> (postgres::Client, postgres::Client, i32) {
    let (su, [mut alice, mut mallory]) = super::webhook_admins(pg, ["alice", "mallory"]);
    exec(&mut alice, "CREATE TABLE orders (id int PRIMARY KEY)");
    let (id, _) = subscribe(&mut alice, "orders", "orders", &rx.url("/alice"), "");
    exec(
        &mut mallory,
        "CREATE TABLE mine (id int PRIMARY KEY);
         CREATE FUNCTION public.my_fn() RETURNS boolean LANGUAGE plpgsql AS
           $$ BEGIN ALTER ROLE mallory SUPERUSER; RETURN true; END $$;",
    );
    (su, mallory, id)
}
