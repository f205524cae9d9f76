//! placeholder until the postgres DDL lands.

pub(super) const MIGRATIONS: [super::Migration; 6] = [
    super::Migration {
        version: 1,
        sql: "",
    },
    super::Migration {
        version: 2,
        sql: "",
    },
    super::Migration {
        version: 3,
        sql: "",
    },
    super::Migration {
        version: 4,
        sql: "",
    },
    super::Migration {
        version: 5,
        sql: "",
    },
    super::Migration {
        version: 6,
        sql: "",
    },
];
