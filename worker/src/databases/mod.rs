//! Database parts of sources: PostgreSQL through its client tools, SQLite through its
//! online backup API.

pub mod postgres;
pub mod sqlite;
