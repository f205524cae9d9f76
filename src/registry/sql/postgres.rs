//! The PostgreSQL backend of [`super::Conn`].

use super::url::ServerUrl;
use super::{Conn, ConnectOptions, Dialect, Row, Value};
use crate::error::{Error, Result};

/// A connection to a PostgreSQL registry database.
pub struct PgConn {}

impl PgConn {
    /// Connects to the database.
    pub fn connect(server: &ServerUrl, opts: ConnectOptions) -> Result<PgConn> {
        let _ = (server, opts);
        Err(Error::Unavailable("PostgreSQL is not supported yet".into()))
    }
}

impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn query(&mut self, _sql: &str, _args: &[Value]) -> Result<Vec<Row>> {
        Err(Error::Unavailable("PostgreSQL is not supported yet".into()))
    }
    fn execute(&mut self, _sql: &str, _args: &[Value]) -> Result<u64> {
        Err(Error::Unavailable("PostgreSQL is not supported yet".into()))
    }
    fn batch(&mut self, _sql: &str) -> Result<()> {
        Err(Error::Unavailable("PostgreSQL is not supported yet".into()))
    }
    fn is_usable(&self) -> bool {
        false
    }
}
