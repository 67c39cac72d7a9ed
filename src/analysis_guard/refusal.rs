//! The ERRORs the analysis guard raises: which function it refused, whose, and why, in the
//! words of the phase it refused it in.

use pgrx::pg_sys;
use pgrx::prelude::*;

use super::{untrusted, Phase, Untrusted};
use crate::error::{function_name, reject};
use crate::privilege::role_name;

/// Under a guard, raises an ERROR when the guard refuses `function` (see `untrusted`).
pub(super) fn refuse_untrusted(function: pg_sys::Oid) {
    let Some(Untrusted {
        phase,
        owner,
        runner,
        procedural,
    }) = untrusted(function)
    else {
        return;
    };
    if let Some(language) = procedural {
        crate::checked_sql::refuse_procedural(&function_name(function), &language_name(language));
    }
    // SAFETY: a plain read of the current user.
    let user = unsafe { pg_sys::GetUserId() };
    let when = match phase {
        Phase::Analysing => "as PostgreSQL reads the expression: a literal of a composite, array or range type is read through its type's input function as the expression is analysed, which checks the constraints of the domains within that type and loads a range type's support functions; build the value instead (ROW(...), ARRAY[...] or a range constructor, over values of the base types), or compare as text",
        Phase::Running => "as PostgreSQL plans or runs the expression, though the check before did not see it: it was made part of what the expression runs since (an operator's commutator or negator defined, a domain's constraint added); run the statement again to have it checked",
        Phase::Rendering(_) => reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "the backfill would run function {}, owned by role {}, as it renders the table's rows as json (a cast to json of a column's type) as role {}, the table's owner, in the callback runner, which runs only code of roles with the rights of role {}, the subscription's owner, and of the role it runs as",
                function_name(function),
                role_name(owner),
                role_name(user),
                role_name(runner)
            ),
            Some("leave the column out (exclude_columns), send it through a payload expression that converts it (pg_catalog.format('%s', …)), or have a role with the rights of both the subscription's owner and the table's owner (a superuser) own the cast's function"),
        ),
        Phase::ReadingKey(_) => reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "the backfill would run function {}, owned by role {}, as it reads back the primary key of the last row it read (a check of a domain within the key's type) as role {}, the table's owner, in the callback runner, which runs only code of roles with the rights of role {}, the subscription's owner, and of the role it runs as",
                function_name(function),
                role_name(owner),
                role_name(user),
                role_name(runner)
            ),
            Some("have a role with the rights of both the subscription's owner and the table's owner (a superuser) own the function, or backfill a table whose primary key's type holds no such domain"),
        ),
        Phase::Capturing(table_owner) => reject(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "pg_webhook capture would run function {}, owned by role {}, with the rights of role {}, the writer, as it renders a row of a table owned by role {} as json for a webhook event (a cast to json of a column's type): only code of roles with the writer's rights or the table owner's runs there",
                function_name(function),
                role_name(owner),
                role_name(runner),
                role_name(table_owner)
            ),
            Some("have the table's owner (or a superuser) own the cast's function, drop the cast, or leave the column out of the subscription's events (exclude_columns)"),
        ),
    };
    reject(
        PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!(
            "the expression would run function {}, owned by role {}, with the rights of role {} {when}",
            function_name(function),
            role_name(owner),
            role_name(runner)
        ),
        None,
    );
}

fn language_name(language: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup; NULL when the language is gone.
    let name = unsafe { pg_sys::get_language_name(language, true) };
    if name.is_null() {
        return format!("language {}", language.to_u32());
    }
    // SAFETY: a palloc'd NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}
