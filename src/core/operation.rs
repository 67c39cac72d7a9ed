//! The kinds of row change a subscription sends, and the `events` argument that lists them.

use std::fmt;
use std::str::FromStr;

/// The kind of row change that produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Insert,
    Update,
    Delete,
    /// One event per TRUNCATE statement; opt-in.
    Truncate,
    /// A row a table already had, sent by `webhook.backfill()`: `record` is the row,
    /// `old_record` null. Never a kind a subscription lists in `events`.
    Backfill,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::Insert,
        Operation::Update,
        Operation::Delete,
        Operation::Truncate,
    ];
    /// What a subscription captures when it names no events.
    pub const DEFAULT: [Operation; 3] = [Operation::Insert, Operation::Update, Operation::Delete];

    /// The upper-case SQL keyword, which is also the payload's `type`.
    pub fn as_sql(self) -> &'static str {
        match self {
            Operation::Insert => "INSERT",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Truncate => "TRUNCATE",
            Operation::Backfill => "BACKFILL",
        }
    }

    /// The lower-case name users write in `events => ARRAY[...]`.
    pub fn as_event_name(self) -> &'static str {
        match self {
            Operation::Insert => "insert",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Truncate => "truncate",
            Operation::Backfill => "backfill",
        }
    }

    /// The kind of a queued event, as its `op` column stores it (`as_sql`): the kinds a
    /// subscription lists, and `BACKFILL`.
    pub fn from_queue(op: &str) -> Result<Operation, UnknownOperation> {
        match op {
            "BACKFILL" => Ok(Operation::Backfill),
            other => other.parse(),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_sql())
    }
}

/// Why an event kind was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOperation(pub String);

impl fmt::Display for UnknownOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown event kind '{}': use 'insert', 'update', 'delete' or 'truncate'",
            self.0.escape_debug()
        )
    }
}

impl std::error::Error for UnknownOperation {}

impl FromStr for Operation {
    type Err = UnknownOperation;

    /// Case-insensitive, surrounding spaces ignored: `'INSERT'`, `'insert'` and `' Insert '` agree.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "insert" => Ok(Operation::Insert),
            "update" => Ok(Operation::Update),
            "delete" => Ok(Operation::Delete),
            "truncate" => Ok(Operation::Truncate),
            _ => Err(UnknownOperation(s.to_string())),
        }
    }
}

/// Why an event list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventListError {
    Empty,
    Null,
    Unknown(UnknownOperation),
}

impl fmt::Display for EventListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventListError::Empty => write!(
                f,
                "events is empty: name at least one of 'insert', 'update', 'delete', 'truncate' (or omit it for the first three)"
            ),
            EventListError::Null => write!(
                f,
                "events contains NULL: name only 'insert', 'update', 'delete' or 'truncate'"
            ),
            EventListError::Unknown(u) => u.fmt(f),
        }
    }
}

impl std::error::Error for EventListError {}

/// Parses the `events` argument: duplicates collapse, order becomes canonical.
pub fn parse_event_list(items: &[Option<&str>]) -> Result<Vec<Operation>, EventListError> {
    if items.is_empty() {
        return Err(EventListError::Empty);
    }
    let mut wanted = Vec::new();
    for item in items {
        let op: Operation = item
            .ok_or(EventListError::Null)?
            .parse()
            .map_err(EventListError::Unknown)?;
        if !wanted.contains(&op) {
            wanted.push(op);
        }
    }
    wanted.sort_by_key(|op| Operation::ALL.iter().position(|o| o == op));
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lists_parse_case_insensitively_and_dedupe() {
        assert_eq!(
            parse_event_list(&[Some("DELETE"), Some(" insert "), Some("delete")]).unwrap(),
            vec![Operation::Insert, Operation::Delete]
        );
    }

    #[test]
    fn backfill_is_a_queued_kind_but_not_one_a_subscription_lists() {
        assert_eq!(Operation::from_queue("BACKFILL"), Ok(Operation::Backfill));
        assert_eq!(Operation::from_queue("UPDATE"), Ok(Operation::Update));
        assert_eq!(Operation::Backfill.as_sql(), "BACKFILL");
        assert!(parse_event_list(&[Some("backfill")]).is_err());
        assert!(!Operation::ALL.contains(&Operation::Backfill));
    }

    #[test]
    fn bad_event_lists_are_refused_with_the_reason() {
        assert_eq!(parse_event_list(&[]), Err(EventListError::Empty));
        assert_eq!(
            parse_event_list(&[Some("insert"), None]),
            Err(EventListError::Null)
        );
        let err = parse_event_list(&[Some("upsert")]).unwrap_err();
        assert!(err.to_string().contains("'upsert'"));
        assert!(err
            .to_string()
            .contains("'insert', 'update', 'delete' or 'truncate'"));
    }
}
