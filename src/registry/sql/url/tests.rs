use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn server(url: &str) -> ServerUrl {
    match DbUrl::parse(url) {
        Ok(DbUrl::Postgres(s)) | Ok(DbUrl::Mysql(s)) => s,
        other => panic!("{url}: {other:?}"),
    }
}

fn err(url: &str) -> String {
    match DbUrl::parse(url) {
        Err(e) => e,
        Ok(u) => panic!("{url} parsed as {u:?}"),
    }
}

#[test]
fn sqlite_forms() {
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        DbUrl::parse("sqlite:////var/lib/glance/g.sqlite").unwrap(),
        DbUrl::Sqlite(PathBuf::from("/var/lib/glance/g.sqlite"))
    );
    assert_eq!(
        DbUrl::parse("sqlite:///glance.sqlite").unwrap(),
        DbUrl::Sqlite(cwd.join("glance.sqlite"))
    );
    assert_eq!(
        DbUrl::parse("sqlite+pysqlite:///data/g.db").unwrap(),
        DbUrl::Sqlite(cwd.join("data/g.db"))
    );
    assert_eq!(
        DbUrl::parse("/srv/glance/registry.db").unwrap(),
        DbUrl::Sqlite(PathBuf::from("/srv/glance/registry.db"))
    );
    assert_eq!(
        DbUrl::parse("reg.db").unwrap(),
        DbUrl::Sqlite(cwd.join("reg.db"))
    );
    let u = DbUrl::parse("sqlite:////a/b.db").unwrap();
    assert_eq!(u.dialect(), Dialect::Sqlite);
    assert_eq!(u.sqlite_path(), Some(Path::new("/a/b.db")));
    assert_eq!(u.redacted(), "sqlite:////a/b.db");

    assert!(err("sqlite://").contains("sqlite:////absolute/path"));
    assert!(err("sqlite://host/x.db").contains("sqlite:////absolute/path"));
    assert!(err("sqlite:///:memory:").contains("in-memory"));
    assert!(err("sqlite:///").contains("in-memory"));
    assert!(err("").contains("in-memory"));
    assert!(err("sqlite:///x.db?timeout=3").contains("query parameters"));
    assert!(err("sqlite+foo:///x.db").contains("driver 'foo'"));
}

#[test]
fn schemes_and_drivers() {
    for scheme in ["mysql", "mysql+mysqldb", "mysql+pymysql", "MySQL+PyMySQL"] {
        let u = DbUrl::parse(&format!("{scheme}://u@h/db")).unwrap();
        assert_eq!(u.dialect(), Dialect::Mysql, "{scheme}");
    }
    for scheme in ["postgresql", "postgres", "postgresql+psycopg2"] {
        let u = DbUrl::parse(&format!("{scheme}://u@h/db")).unwrap();
        assert_eq!(u.dialect(), Dialect::Postgres, "{scheme}");
    }
    assert_eq!(
        err("mysql+foo://u:pw@h/db"),
        "uses the driver 'foo' for mysql, which is not supported (supported: mysql://, \
         mysql+mysqldb://, mysql+pymysql://)"
    );
    assert!(err("postgresql+pg8000://h/db").contains("postgresql+psycopg2://"));
    assert_eq!(
        err("oracle://scott:tiger@h/orcl"),
        "uses database 'oracle', which is not supported (supported: sqlite, postgresql, mysql)"
    );
}

#[test]
fn server_parts() {
    let s = server("mysql://glance:s3cret@db.example.com:3307/glance?charset=utf8");
    assert_eq!(s.user.as_deref(), Some("glance"));
    assert_eq!(s.password.as_deref(), Some("s3cret"));
    assert_eq!(s.host.as_deref(), Some("db.example.com"));
    assert_eq!(s.port, Some(3307));
    assert_eq!(s.database, "glance");
    assert_eq!(s.socket, None);
    assert_eq!(s.params, [("charset".to_string(), "utf8".to_string())]);
    assert_eq!(s.param("charset"), Some("utf8"));

    // No user, no port, no password.
    let s = server("postgresql://db/glance");
    assert_eq!((s.user, s.password, s.port), (None, None, None));
    assert_eq!(s.host.as_deref(), Some("db"));
    let s = server("postgresql://glance@/glance");
    assert_eq!(s.user.as_deref(), Some("glance"));
    assert_eq!(s.host, None);

    // Percent-decoding of user, password and database.
    let s = server("mysql://gl%40nce:p%40ss%3Aw%2Fd@h/gl%20db");
    assert_eq!(s.user.as_deref(), Some("gl@nce"));
    assert_eq!(s.password.as_deref(), Some("p@ss:w/d"));
    assert_eq!(s.database, "gl db");
    // An unencoded ':', '/' or '?' in the password, as SQLAlchemy splits it.
    let s = server("mysql://u:a:b/c?d@h:3306/db");
    assert_eq!(s.password.as_deref(), Some("a:b/c?d"));
    assert_eq!(s.host.as_deref(), Some("h"));
    // A '%' that starts no escape stays.
    assert_eq!(
        server("mysql://u:50%@h/db").password.as_deref(),
        Some("50%")
    );
    // An empty password is none.
    assert_eq!(server("mysql://root:@h/db").password, None);

    // IPv6.
    let s = server("postgresql://u:pw@[::1]:5433/db");
    assert_eq!(s.host.as_deref(), Some("::1"));
    assert_eq!(s.port, Some(5433));
    let s = server("postgresql://[fe80::1]/db");
    assert_eq!((s.host.as_deref(), s.port), (Some("fe80::1"), None));
}

#[test]
fn server_errors() {
    for port in ["0", "65536", "x", "", "-1"] {
        let e = err(&format!("mysql://u:pw@h:{port}/db"));
        assert!(e.contains("between 1 and 65535"), "{port}: {e}");
    }
    assert!(err("postgresql://::1:5432/db").contains("brackets"));
    assert!(err("postgresql://[::1/db").contains("closing ']'"));
    assert!(err("postgresql://[nothost]/db").contains("not an IPv6 address"));
    assert!(err("postgresql://[::1]x/db").contains("':port'"));
    for url in [
        "mysql://u:pw@h",
        "mysql://u:pw@h/",
        "mysql://u:pw@h/?charset=utf8",
        "postgresql://h:5432",
    ] {
        assert!(err(url).contains("names no database"), "{url}");
    }
}

#[test]
fn query_parameters() {
    let s = server("mysql://root@localhost/glance?unix_socket=/run/mysqld/mysqld.sock");
    assert_eq!(s.socket, Some(PathBuf::from("/run/mysqld/mysqld.sock")));
    assert_eq!(s.host, None, "the socket wins over the host");
    assert!(s.params.is_empty());

    let s = server("mysql+pymysql://u:pw@h/g?charset=UTF8MB4&use_unicode=0&connect_timeout=7");
    assert_eq!(s.param("charset"), Some("utf8mb4"));
    assert_eq!(s.param("use_unicode"), Some("0"));
    assert_eq!(s.connect_timeout(), Some(Duration::from_secs(7)));

    let s = server("postgresql://glance@/glance?host=/var/run/postgresql&sslmode=Require");
    assert_eq!(s.socket, Some(PathBuf::from("/var/run/postgresql")));
    assert_eq!(s.param("sslmode"), Some("require"));
    assert_eq!(s.connect_timeout(), None);
    // libpq's socket directory as the (encoded) host.
    let s = server("postgresql://glance@%2Fvar%2Frun%2Fpostgresql/glance");
    assert_eq!(s.socket, Some(PathBuf::from("/var/run/postgresql")));
    assert_eq!(s.host, None);

    assert_eq!(
        err("mysql://u:pw@h/g?foo=1"),
        "has the query parameter 'foo', which is not supported for MySQL (supported: \
         charset, connect_timeout, unix_socket, use_unicode)"
    );
    assert!(err("postgresql://u@h/g?charset=utf8").contains("not supported for PostgreSQL"));
    assert!(err("mysql://u@h/g?sslmode=require").contains("'sslmode'"));
    assert!(err("mysql://u@h/g?charset=latin1").contains("only utf8 and utf8mb4"));
    assert!(err("postgresql://u@h/g?sslmode=sometimes").contains("verify-full"));
    assert!(err("postgresql://u@h/g?host=db").contains("socket directory"));
    assert!(err("mysql://u@h/g?connect_timeout=0").contains("between 1 and 3600"));
    assert!(err("mysql://u@h/g?connect_timeout=abc").contains("between 1 and 3600"));
    assert!(err("mysql://u@h/g?charset=utf8&charset=utf8").contains("twice"));
    assert!(err("mysql://u@h/g?charset").contains("no value"));
    assert!(err("mysql://u@h/g?use_unicode=2").contains("not 0 or 1"));
}

#[test]
fn errors_never_show_the_password() {
    for url in [
        "mysql+foo://u:s3cretpw@h/db",
        "mysql://u:s3cretpw@h:99999/db",
        "mysql://u:s3cretpw@h/",
        "mysql://u:s3cretpw@h/db?bogus=1",
        "mysql://u:s3cretpw@[zz]/db",
        "postgresql://u:s3cretpw@h/db?sslmode=x",
        "oracle://u:s3cretpw@h/db",
        "mysql://u:s3cretpw%ff@h/db",
    ] {
        let e = err(url);
        assert!(!e.contains("s3cretpw"), "{url}: {e}");
    }
    let s = server("mysql://u:s3cretpw@h/db");
    assert!(!format!("{s:?}").contains("s3cretpw"));
    let u = DbUrl::parse("mysql://u:s3cretpw@h/db").unwrap();
    assert!(!format!("{u:?}").contains("s3cretpw"));
    assert!(!format!("{u}").contains("s3cretpw"));
}

#[test]
fn redacted_forms() {
    let r = |url: &str| DbUrl::parse(url).unwrap().redacted();
    assert_eq!(
        r("mysql+pymysql://glance:s3cret@db:3306/glance?charset=utf8"),
        "mysql://glance:***@db:3306/glance?charset=utf8"
    );
    assert_eq!(r("mysql://db/glance"), "mysql://db/glance");
    assert_eq!(r("postgres://u@db/glance"), "postgresql://u@db/glance");
    assert_eq!(
        r("postgresql://u:p@[::1]:5432/g?host=/run/pg&sslmode=disable"),
        "postgresql://u:***@:5432/g?host=/run/pg&sslmode=disable"
    );
    assert_eq!(
        r("postgresql://u:p@[::1]:5432/g"),
        "postgresql://u:***@[::1]:5432/g"
    );
    assert_eq!(r("mysql://a%40b:p@h/x%20y"), "mysql://a%40b:***@h/x%20y");
    // What the redacted form shows parses back to the same place.
    let u = DbUrl::parse("mysql://a%40b:p@h:1/x%20y?unix_socket=/s%20k").unwrap();
    let DbUrl::Mysql(back) = DbUrl::parse(&u.redacted()).unwrap() else {
        panic!()
    };
    let DbUrl::Mysql(orig) = u else { panic!() };
    assert_eq!(
        (back.user, back.host, back.port, back.database, back.socket),
        (orig.user, orig.host, orig.port, orig.database, orig.socket)
    );
}

#[test]
fn redact_unparsed_text() {
    assert_eq!(redact("mysql://u:pw@h/db"), "mysql://u:***@h/db");
    assert_eq!(redact("mysql://u@h/db"), "mysql://u:***@h/db");
    assert_eq!(redact("mysql://h/db"), "mysql://h/db");
    assert_eq!(redact("a:b@c"), "a:b@c");
    // A password with '/' or '?' is hidden whole, as the parser would read it.
    assert_eq!(redact("mysql://u:a/b?c@h/db"), "mysql://u:***@h/db");
    assert_eq!(redact("http://h/p@x"), "http://h/p@x");
}
