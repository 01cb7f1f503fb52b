//! The rolling-upgrade rule, checked on every migration: while nodes of
//! version N and N+1 run side by side, version N must keep working on the
//! schema of N+1. So a migration only adds (tables, nullable columns or
//! columns with a default, indexes, functions, triggers); it never drops or
//! renames what a released node reads or writes, changes a column's type,
//! or makes a column NOT NULL without a default. Removing something takes
//! two releases: stop using it in release N+1, drop it in N+2
//! (docs/operations.md, "Upgrade").

#[cfg(test)]
mod tests {
    /// Statements the rule forbids, as (name, pattern on the upper-cased
    /// statement with spaces collapsed).
    const FORBIDDEN: &[(&str, &str)] = &[
        ("DROP TABLE", "DROP TABLE "),
        ("DROP COLUMN", "DROP COLUMN "),
        ("DROP VIEW", "DROP VIEW "),
        ("DROP FUNCTION", "DROP FUNCTION "),
        ("RENAME", " RENAME "),
        ("SET DATA TYPE", " TYPE "),
        ("SET NOT NULL", "SET NOT NULL"),
    ];

    /// Released migrations that broke the rule knowingly, with why it was
    /// safe: (file, forbidden statement).
    const ALLOWED: &[(&str, &str)] = &[
        // A trigger function no node ever calls (its trigger went in the
        // same migration; NOTIFY gave way to polling).
        ("20261122000006_recovery_by_activity.sql", "DROP FUNCTION"),
    ];

    fn statements(sql: &str) -> Vec<String> {
        let without_comments: String = sql
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        without_comments
            .split(';')
            .map(|s| {
                s.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_uppercase()
            })
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// `ADD COLUMN name type NOT NULL` without a default or a generated value:
    /// the previous version's INSERTs, which do not name it, would fail.
    fn adds_required_column(statement: &str) -> bool {
        statement.split("ADD COLUMN ").skip(1).any(|rest| {
            let column = rest.split(',').next().unwrap_or("");
            column.contains("NOT NULL")
                && !column.contains("DEFAULT")
                && !column.contains("GENERATED")
        })
    }

    fn breaks(statement: &str) -> Vec<&'static str> {
        let mut found: Vec<&'static str> = FORBIDDEN
            .iter()
            .filter(|(name, pattern)| {
                // `TYPE` only in ALTER COLUMN … TYPE (a CREATE TYPE adds).
                statement.contains(pattern)
                    && (*name != "SET DATA TYPE" || statement.contains("ALTER COLUMN "))
            })
            .map(|(name, _)| *name)
            .collect();
        if adds_required_column(statement) {
            found.push("ADD COLUMN NOT NULL without DEFAULT");
        }
        found
    }

    #[test]
    fn the_rule_catches_what_it_names() {
        for bad in [
            "ALTER TABLE messages DROP COLUMN text",
            "ALTER TABLE users RENAME COLUMN name TO title",
            "ALTER TABLE users ALTER COLUMN phone TYPE bigint",
            "ALTER TABLE users ALTER COLUMN phone SET NOT NULL",
            "ALTER TABLE users ADD COLUMN nick text NOT NULL",
            "DROP TABLE members",
        ] {
            assert!(!breaks(&statements(bad)[0]).is_empty(), "{bad}");
        }
        for good in [
            "ALTER TABLE users ADD COLUMN nick text NOT NULL DEFAULT ''",
            "ALTER TABLE users ADD COLUMN nick text",
            "CREATE TYPE mood AS ENUM ('a')",
            "ALTER TABLE messages DROP CONSTRAINT messages_author_id_fkey",
        ] {
            assert!(breaks(&statements(good)[0]).is_empty(), "{good}");
        }
    }

    #[test]
    fn every_migration_keeps_the_previous_version_working() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("migrations dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        files.sort();
        assert!(files.len() > 20, "migrations found: {}", files.len());
        let mut broken = Vec::new();
        for f in files {
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_owned();
            let sql = std::fs::read_to_string(&f).expect("migration");
            for st in statements(&sql) {
                for what in breaks(&st) {
                    if !ALLOWED.contains(&(name.as_str(), what)) {
                        broken.push(format!("{name}: {what}: {st}"));
                    }
                }
            }
        }
        assert!(
            broken.is_empty(),
            "migrations that would break the previous version during a rolling upgrade \
             (see migration_rules.rs):\n{}",
            broken.join("\n")
        );
    }
}
