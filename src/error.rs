//! User-facing errors with stable codes (design §9).
//!
//! Every error a user can see carries a numeric code and a class, and the console prints it
//! as `SOLID <Class> Error <code>: <message>`. Codes are part of the product's contract:
//! tests and scripts match on them, so never renumber one. Fatal conditions (corrupt storage,
//! a broken invariant) are not `SolidError`s: they stop the node (see `storage::StorageError`).

use std::fmt;

/// The class printed between `SOLID` and `Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The statement text could not be parsed (10xxx).
    Syntax,
    /// Tables, columns, rows and values (13xxx).
    Table,
    /// Server-side conditions: no database, shutting down, overload (14xxx).
    Server,
    /// Grid membership and routing (185xx).
    Grid,
    /// Login and privileges (28xxx).
    Auth,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Syntax => "Syntax",
            ErrorClass::Table => "Table",
            ErrorClass::Server => "Server",
            ErrorClass::Grid => "Grid",
            ErrorClass::Auth => "Auth",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorClass> {
        Some(match s {
            "Syntax" => ErrorClass::Syntax,
            "Table" => ErrorClass::Table,
            "Server" => ErrorClass::Server,
            "Grid" => ErrorClass::Grid,
            "Auth" => ErrorClass::Auth,
            _ => return None,
        })
    }
}

/// Stable error codes. The grid codes are fixed by design §9; the others are ours.
pub mod code {
    /// Statement text does not parse; the message names line and column.
    pub const SYNTAX: u32 = 10001;

    pub const TABLE_NOT_FOUND: u32 = 13011;
    pub const TABLE_EXISTS: u32 = 13013;
    pub const COLUMN_NOT_FOUND: u32 = 13014;
    pub const DUPLICATE_COLUMN: u32 = 13015;
    pub const DUPLICATE_KEY: u32 = 13016;
    pub const NOT_NULL_VIOLATION: u32 = 13017;
    pub const TYPE_MISMATCH: u32 = 13018;
    pub const VALUE_TOO_LONG: u32 = 13019;
    pub const VALUE_COUNT: u32 = 13020;
    pub const ARITHMETIC: u32 = 13021;
    pub const BAD_TABLE_DEFINITION: u32 = 13022;
    pub const NOT_PRIMARY: u32 = 13630;
    pub const NOT_SUPPORTED_IN_GRID: u32 = 13634;

    /// The node has no database (an empty `-x gridnode` node).
    pub const NO_DATABASE: u32 = 14501;
    /// The node is shutting down.
    pub const SHUTTING_DOWN: u32 = 14502;
    /// Too many sessions or connections.
    pub const OVERLOADED: u32 = 14503;
    /// Statement or result larger than the configured bound.
    pub const TOO_LARGE: u32 = 14504;
    /// Unknown `ADMIN COMMAND`.
    pub const UNKNOWN_ADMIN_COMMAND: u32 = 14505;
    /// The transaction log or database file could not be written; the statement was not applied.
    pub const STORAGE: u32 = 14506;
    /// Invalid client request (e.g. empty statement).
    pub const BAD_REQUEST: u32 = 14507;

    pub const GRID_NOT_ENABLED: u32 = 18501;
    pub const NO_LEADER: u32 = 18502;
    pub const NOT_LEADER: u32 = 18503;
    pub const NODE_HAS_DATA: u32 = 18504;
    pub const NODE_UNREACHABLE: u32 = 18505;
    pub const CHANGE_IN_PROGRESS: u32 = 18506;
    pub const UNKNOWN_NODE: u32 = 18507;
    pub const TRANSITION_NOT_ALLOWED: u32 = 18508;
    pub const ROLLED_BACK: u32 = 18509;
    pub const OUTCOME_UNKNOWN: u32 = 18510;
    pub const PEER_AUTH: u32 = 18511;

    /// Wrong user name or password.
    pub const LOGIN_FAILED: u32 = 28000;
    /// The user lacks the privilege (admin) the statement needs.
    pub const NOT_PERMITTED: u32 = 28001;
    pub const USER_EXISTS: u32 = 28002;
    pub const USER_NOT_FOUND: u32 = 28003;
    /// The session token is unknown or expired: log in again.
    pub const BAD_SESSION: u32 = 28004;
    /// The statement would leave the database without an admin user (or drop the caller).
    pub const LAST_ADMIN: u32 = 28005;
}

/// An error reported to the user, with its stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SOLID {} Error {code}: {message}", class.as_str())]
pub struct SolidError {
    pub code: u32,
    pub class: ErrorClass,
    pub message: String,
}

impl SolidError {
    pub fn new(class: ErrorClass, code: u32, message: impl Into<String>) -> Self {
        SolidError {
            code,
            class,
            message: message.into(),
        }
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Syntax, code::SYNTAX, message)
    }

    pub fn table(code: u32, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Table, code, message)
    }

    pub fn server(code: u32, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Server, code, message)
    }

    pub fn grid(code: u32, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Grid, code, message)
    }

    pub fn auth(code: u32, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Auth, code, message)
    }

    pub fn type_mismatch(message: impl Into<String>) -> Self {
        Self::table(code::TYPE_MISMATCH, message)
    }

    pub fn not_permitted(what: &str) -> Self {
        Self::auth(
            code::NOT_PERMITTED,
            format!("{what} requires the ADMIN privilege"),
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub type SolidResult<T> = Result<T, SolidError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_the_console_format() {
        let e = SolidError::grid(code::NOT_LEADER, "run it on the leader n1");
        assert_eq!(
            e.to_string(),
            "SOLID Grid Error 18503: run it on the leader n1"
        );
    }

    #[test]
    fn class_round_trips_through_text() {
        for c in [
            ErrorClass::Syntax,
            ErrorClass::Table,
            ErrorClass::Server,
            ErrorClass::Grid,
            ErrorClass::Auth,
        ] {
            assert_eq!(ErrorClass::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorClass::parse("Nope"), None);
    }
}
