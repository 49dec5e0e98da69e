//! The PostgreSQL schema: the SQLite tables in PostgreSQL types, and its migrations.
//!
//! `schema_migrations` records which ran. Nodes starting at once against one database
//! take an advisory lock first, so one migrates and the others find it done.

use postgres::Client;

/// The advisory lock migrations hold (a two-key lock: a space of its own, apart from the
/// one-key locks the writer takes on conversations). The keys spell "cc" and "mig".
const MIGRATION_LOCK: (i32, i32) = (0x6363, 0x6d6967);

/// Migrations, applied in order; each runs once, in the transaction that records it.
const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite's migrations 1 to 6 built, and the search terms of a message
    // as an array (`terms`, a GIN index answers "has any of these terms" with `&&`).
    // `grant` and `user` are reserved words in PostgreSQL, hence quoted.
    r#"CREATE TABLE users(
        name_lc TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        auth BYTEA NOT NULL,
        server_admin BOOLEAN NOT NULL DEFAULT FALSE,
        banned BOOLEAN NOT NULL DEFAULT FALSE,
        created BIGINT NOT NULL
    );
    CREATE TABLE devices(
        user_lc TEXT NOT NULL,
        device TEXT NOT NULL,
        token_hash BYTEA,
        baseline BIGINT NOT NULL,
        prev_token_hash BYTEA,
        prev_until BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY(user_lc, device)
    );
    CREATE TABLE rooms(
        name_lc TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        topic TEXT NOT NULL,
        password BYTEA,
        admin_lc TEXT NOT NULL,
        created BIGINT NOT NULL
    );
    CREATE TABLE room_members(
        room_lc TEXT NOT NULL,
        user_lc TEXT NOT NULL,
        joined_id BIGINT NOT NULL,
        PRIMARY KEY(room_lc, user_lc)
    );
    CREATE TABLE room_bans(room_lc TEXT NOT NULL, user_lc TEXT NOT NULL, PRIMARY KEY(room_lc, user_lc));
    CREATE TABLE dm_pairs(a_lc TEXT NOT NULL, b_lc TEXT NOT NULL, PRIMARY KEY(a_lc, b_lc));
    CREATE SEQUENCE message_ids;
    CREATE TABLE messages(
        id BIGINT PRIMARY KEY,
        conv TEXT NOT NULL,
        sender TEXT NOT NULL,
        ts BIGINT NOT NULL,
        body BYTEA NOT NULL,
        reply_to BIGINT,
        edited BIGINT,
        deleted_by TEXT,
        terms TEXT[]
    );
    CREATE INDEX messages_by_conv ON messages(conv, id);
    CREATE INDEX messages_by_terms ON messages USING GIN (terms);
    CREATE TABLE cursors(
        user_lc TEXT NOT NULL,
        device TEXT NOT NULL,
        conv TEXT NOT NULL,
        up_to BIGINT NOT NULL,
        PRIMARY KEY(user_lc, device, conv)
    );
    CREATE TABLE identity_keys(
        user_lc TEXT PRIMARY KEY,
        public_key BYTEA NOT NULL,
        backup BYTEA NOT NULL,
        updated BIGINT NOT NULL
    );
    CREATE TABLE dm_keys(
        conv TEXT NOT NULL,
        key_id BYTEA NOT NULL,
        "grant" BYTEA NOT NULL,
        seq BIGINT NOT NULL,
        PRIMARY KEY(conv, key_id)
    );
    CREATE TABLE files(
        id BIGINT PRIMARY KEY,
        owner_lc TEXT NOT NULL,
        sender TEXT NOT NULL,
        conv TEXT NOT NULL,
        recipient_lc TEXT,
        name TEXT NOT NULL,
        size BIGINT NOT NULL,
        meta BYTEA,
        sha256 BYTEA,
        token_hash BYTEA NOT NULL,
        accepted BOOLEAN NOT NULL DEFAULT FALSE,
        created BIGINT NOT NULL,
        completed BIGINT
    );
    CREATE TABLE class_objects(
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        room_lc TEXT,
        value BYTEA NOT NULL,
        PRIMARY KEY(kind, key)
    );
    CREATE INDEX class_objects_by_room ON class_objects(room_lc);
    CREATE TABLE audit(
        id BIGSERIAL PRIMARY KEY,
        ts BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE TABLE reactions(
        n BIGSERIAL PRIMARY KEY,
        msg BIGINT NOT NULL,
        emoji TEXT NOT NULL,
        user_lc TEXT NOT NULL,
        "user" TEXT NOT NULL,
        UNIQUE(msg, emoji, user_lc)
    );
    CREATE TABLE message_updates(
        id BIGINT PRIMARY KEY,
        conv TEXT NOT NULL,
        msg BIGINT NOT NULL,
        kind SMALLINT NOT NULL
    );
    CREATE INDEX message_updates_by_conv ON message_updates(conv, id);"#,
    // 2: the content of shared files, so every node can serve every file: named by its
    // SHA-256 like the files on disk, in chunks of `blobs::CHUNK` bytes.
    "CREATE TABLE file_blobs(
        sha256 BYTEA NOT NULL,
        chunk_no INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY(sha256, chunk_no)
    );",
    // 3: file ids from the database, so that two nodes never give out the same one; it
    // starts after the files already there.
    "CREATE SEQUENCE file_ids;
    SELECT setval('file_ids', COALESCE((SELECT MAX(id) FROM files), 0) + 1, false);",
    // 4: question and poll ids likewise (their records are class objects keyed by id).
    "CREATE SEQUENCE question_ids;
    CREATE SEQUENCE poll_ids;
    SELECT setval('question_ids', COALESCE((SELECT MAX(key::BIGINT) FROM class_objects
        WHERE kind = 'question' AND key ~ '^[0-9]{1,18}$'), 0) + 1, false);
    SELECT setval('poll_ids', COALESCE((SELECT MAX(key::BIGINT) FROM class_objects
        WHERE kind = 'poll' AND key ~ '^[0-9]{1,18}$'), 0) + 1, false);",
];

/// Creates the schema or brings it up to date, under the migration lock.
pub(super) fn migrate(client: &mut Client) -> anyhow::Result<()> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&MIGRATION_LOCK.0, &MIGRATION_LOCK.1])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations(version INTEGER PRIMARY KEY, applied BIGINT NOT NULL)",
    )?;
    let done: i32 =
        tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?.try_get(0)?;
    let done = usize::try_from(done).unwrap_or(0);
    anyhow::ensure!(
        done <= MIGRATIONS.len(),
        "the database's schema is version {done}, newer than this server knows ({}): upgrade the server",
        MIGRATIONS.len()
    );
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(sql)?;
        let version = i32::try_from(i + 1)?;
        tx.execute(
            "INSERT INTO schema_migrations(version, applied) VALUES ($1, $2)",
            &[&version, &(super::super::now_ms() as i64)],
        )?;
        tracing::info!(version, "applied PostgreSQL migration");
    }
    tx.commit()?;
    Ok(())
}
