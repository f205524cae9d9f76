//! The PostgreSQL schema, applied to fresh databases on the test server: the tests of
//! [`crate::registry::migrate::server_tests`], on what this server's schema says.

use super::MIGRATIONS;
use crate::registry::migrate::server_tests::{ServerSchema, server_schema_tests};
use crate::registry::sql::testdb;

const POSTGRES: ServerSchema = ServerSchema {
    name: "postgres",
    migrations: &MIGRATIONS,
    scratch: testdb::postgres,
    columns_sql: "SELECT table_name::text, column_name::text, data_type::text, \
                  collation_name::text \
                  FROM information_schema.columns WHERE table_schema = 'public'",
    indexes_sql: "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public'",
    // Text is COLLATE "C"; flags are SMALLINT, never BOOLEAN.
    text_types: &["text", "character varying"],
    collation: "C",
    flag_type: "smallint",
    time_type: "character varying",
    never_types: &["boolean"],
};

server_schema_tests!(POSTGRES);
