//! The MySQL schema, applied to fresh databases on the test server: the tests of
//! [`crate::registry::migrate::server_tests`], on what this server's schema says.

use super::MIGRATIONS;
use crate::registry::migrate::server_tests::{ServerSchema, server_schema_tests};
use crate::registry::sql::testdb;

const MYSQL: ServerSchema = ServerSchema {
    name: "mysql",
    migrations: &MIGRATIONS,
    scratch: testdb::mysql,
    columns_sql: "SELECT table_name, column_name, data_type, collation_name \
                  FROM information_schema.columns WHERE table_schema = DATABASE()",
    indexes_sql: "SELECT DISTINCT index_name FROM information_schema.statistics \
                  WHERE table_schema = DATABASE()",
    // Text is utf8mb4_bin; flags are TINYINT; timestamps text.
    text_types: &["text", "mediumtext", "varchar"],
    collation: "utf8mb4_bin",
    flag_type: "tinyint",
    time_type: "varchar",
    never_types: &[],
};

server_schema_tests!(MYSQL);
