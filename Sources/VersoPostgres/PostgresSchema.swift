import Foundation
import Logging
import PostgresNIO

/// The PostgreSQL store's tables and functions, created and migrated by the server.
///
/// Migrations are numbered and recorded in `verso_migrations`; servers starting together take
/// an advisory lock so that only one migrates. Record keys are `text COLLATE "C"` so that key
/// order is UTF-8 byte order (Protocol.md section 2); record data is the canonical JSON as
/// text, never `jsonb` (which reorders members and rewrites numbers).
enum PostgresSchema {
    /// The advisory lock migrations run under (any constant the database's other users do not take).
    static let migrationLock: Int64 = 0x7665_7273_6f00_0001

    /// Each migration's statements, in order; the first creates the store.
    static let migrations: [[String]] = [
        // 1: the store (verso_apply_v1 decided under the lock; dropped in 3).
        [
            """
            CREATE TABLE verso_meta (
                id int PRIMARY KEY CHECK (id = 1),
                epoch text NOT NULL,
                last_seq bigint NOT NULL DEFAULT 0,
                pruned_through bigint NOT NULL DEFAULT 0
            )
            """,
            """
            CREATE TABLE verso_records (
                key text COLLATE "C" PRIMARY KEY,
                version bigint NOT NULL CHECK (version >= 1),
                data text,
                seq bigint NOT NULL,
                at_ms bigint,
                author text
            ) WITH (fillfactor = 90)
            """,
            """
            CREATE TABLE verso_changes (
                seq bigint NOT NULL,
                key text COLLATE "C" NOT NULL,
                version bigint NOT NULL,
                data text,
                at_ms bigint,
                author text,
                writer bigint NOT NULL,
                PRIMARY KEY (seq, key)
            )
            """,
            """
            CREATE INDEX verso_changes_key_version ON verso_changes (key, version)
            """,
            """
            CREATE TABLE verso_kept_versions (
                key text COLLATE "C" NOT NULL,
                version bigint NOT NULL,
                seq bigint NOT NULL,
                at_ms bigint,
                author text,
                data text,
                PRIMARY KEY (key, version)
            )
            """,
            """
            CREATE TABLE verso_idempotency (
                scope text NOT NULL,
                key text NOT NULL,
                fingerprint text NOT NULL,
                at bigint NOT NULL,
                outcome text NOT NULL,
                PRIMARY KEY (scope, key)
            )
            """,
            """
            CREATE INDEX verso_idempotency_at ON verso_idempotency (at)
            """,
            """
            CREATE SEQUENCE verso_writer_ids
            """,
            """
            CREATE FUNCTION verso_apply_v1(
                p_decided_at bigint, p_last_seq bigint, p_writer bigint, p_at bigint, p_now bigint,
                k_keys text[], k_read bigint[],
                c_seqs bigint[], c_keys text[], c_versions bigint[], c_data text[], c_deleted bool[],
                c_authors text[], c_anonymous bool[],
                i_scopes text[], i_keys text[], i_fingerprints text[], i_outcomes text[]
            ) RETURNS void LANGUAGE plpgsql AS $$
            DECLARE v_last bigint;
            BEGIN
                -- The commit lock (held since the batch was read): seq order is commit order.
                SELECT last_seq INTO v_last FROM verso_meta WHERE id = 1 FOR UPDATE;
                IF v_last <> p_decided_at THEN
                    RAISE EXCEPTION 'verso: batch decided at seq %, the store is at %', p_decided_at, v_last
                        USING ERRCODE = 'serialization_failure';
                END IF;
                -- Compare-and-set on every key written: still at the version it was decided against.
                IF EXISTS (
                    SELECT 1 FROM unnest(k_keys, k_read) AS r(k, v)
                    LEFT JOIN verso_records t ON t.key = r.k
                    WHERE coalesce(t.version, 0) <> r.v
                ) THEN
                    RAISE EXCEPTION 'verso: a record changed since the batch was decided'
                        USING ERRCODE = 'serialization_failure';
                END IF;
                INSERT INTO verso_changes (seq, key, version, data, at_ms, author, writer)
                    SELECT s, k, v, CASE WHEN d THEN NULL ELSE t END, p_at, CASE WHEN a0 THEN NULL ELSE a END, p_writer
                    FROM unnest(c_seqs, c_keys, c_versions, c_data, c_deleted, c_authors, c_anonymous)
                        AS c(s, k, v, t, d, a, a0);
                INSERT INTO verso_records (key, version, data, seq, at_ms, author)
                    SELECT DISTINCT ON (k) k, v, CASE WHEN d THEN NULL ELSE t END, s, p_at,
                        CASE WHEN a0 THEN NULL ELSE a END
                    FROM unnest(c_seqs, c_keys, c_versions, c_data, c_deleted, c_authors, c_anonymous)
                        AS c(s, k, v, t, d, a, a0)
                    ORDER BY k, v DESC
                ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, data = EXCLUDED.data,
                    seq = EXCLUDED.seq, at_ms = EXCLUDED.at_ms, author = EXCLUDED.author;
                INSERT INTO verso_idempotency (scope, key, fingerprint, at, outcome)
                    SELECT s, k, f, p_now, o FROM unnest(i_scopes, i_keys, i_fingerprints, i_outcomes) AS i(s, k, f, o);
                UPDATE verso_meta SET last_seq = p_last_seq WHERE id = 1;
            END $$
            """,
        ],
        // 2: the write decided before the lock is taken (verso_apply_v2); idempotency outcomes
        // keep their seqs relative to the batch's base.
        [
            "ALTER TABLE verso_idempotency ADD COLUMN seq_base bigint NOT NULL DEFAULT 0",
            applyV2,
        ],
        // 3: verso_apply_v2 checks its read set key by key through the primary keys. Its join
        // got a generic plan made while the tables were small (a hash join over a sequential
        // scan of every record: ~3 ms a batch, under the commit lock, once the store held
        // 20,000 records). verso_apply_v1 has not been called since 2.
        [
            applyV2,
            "DROP FUNCTION verso_apply_v1",
        ],
    ]

    /// Applies a batch decided before the lock (migrations 2 and 3): takes the commit lock,
    /// writes nothing if the read set changed, else writes with seqs from the store's last.
    private static let applyV2 = """
        CREATE OR REPLACE FUNCTION verso_apply_v2(
            p_writer bigint, p_at bigint, p_now bigint, p_seqs bigint,
            k_keys text[], k_read bigint[],
            c_offsets bigint[], c_keys text[], c_versions bigint[], c_data text[], c_deleted bool[],
            c_authors text[], c_anonymous bool[],
            i_scopes text[], i_keys text[], i_fingerprints text[], i_outcomes text[]
        ) RETURNS TABLE (o_base bigint, o_pruned bigint, o_xact text, o_stale bool) LANGUAGE plpgsql AS $$
        DECLARE v_last bigint; v_pruned bigint;
        BEGIN
            -- The commit lock, held to COMMIT: seq order is commit order.
            SELECT m.last_seq, m.pruned_through INTO v_last, v_pruned FROM verso_meta m WHERE m.id = 1 FOR UPDATE;
            -- The read set: every key the batch decided on still at the version read, and no
            -- idempotency key it keeps stored meanwhile. Else nothing is written. Scalar
            -- subqueries, so that each key is one primary-key lookup whatever the plan cached.
            IF EXISTS (
                SELECT 1 FROM unnest(k_keys, k_read) AS r(k, v)
                WHERE r.v <> coalesce((SELECT t.version FROM verso_records t WHERE t.key = r.k), 0)
            ) OR EXISTS (
                SELECT 1 FROM unnest(i_scopes, i_keys) AS i(s, k)
                WHERE (SELECT true FROM verso_idempotency c WHERE c.scope = i.s AND c.key = i.k)
            ) THEN
                RETURN QUERY SELECT v_last, v_pruned, pg_current_xact_id()::text, true;
                RETURN;
            END IF;
            INSERT INTO verso_changes (seq, key, version, data, at_ms, author, writer)
                SELECT v_last + o, k, v, CASE WHEN d THEN NULL ELSE t END, p_at,
                    CASE WHEN a0 THEN NULL ELSE a END, p_writer
                FROM unnest(c_offsets, c_keys, c_versions, c_data, c_deleted, c_authors, c_anonymous)
                    AS c(o, k, v, t, d, a, a0);
            INSERT INTO verso_records (key, version, data, seq, at_ms, author)
                SELECT DISTINCT ON (k) k, v, CASE WHEN d THEN NULL ELSE t END, v_last + o, p_at,
                    CASE WHEN a0 THEN NULL ELSE a END
                FROM unnest(c_offsets, c_keys, c_versions, c_data, c_deleted, c_authors, c_anonymous)
                    AS c(o, k, v, t, d, a, a0)
                ORDER BY k, v DESC
            ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version, data = EXCLUDED.data,
                seq = EXCLUDED.seq, at_ms = EXCLUDED.at_ms, author = EXCLUDED.author;
            INSERT INTO verso_idempotency (scope, key, fingerprint, at, outcome, seq_base)
                SELECT s, k, f, p_now, o, v_last
                FROM unnest(i_scopes, i_keys, i_fingerprints, i_outcomes) AS i(s, k, f, o);
            UPDATE verso_meta SET last_seq = v_last + p_seqs WHERE id = 1;
            RETURN QUERY SELECT v_last, v_pruned, pg_current_xact_id()::text, false;
        END $$
        """

    /// Brings the database up to the newest schema (creating the store, with a new epoch, once).
    static func migrate(_ connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query("SELECT pg_advisory_lock(\(migrationLock))", logger: logger)
        do {
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS verso_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                logger: logger
            )
            var applied = 0
            for try await version in try await connection.query(
                "SELECT coalesce(max(version), 0) FROM verso_migrations",
                logger: logger
            ).decode(Int.self) {
                applied = version
            }
            guard applied <= migrations.count else {
                throw PostgresStoreError(
                    "the database's Verso schema is version \(applied), newer than this server knows (\(migrations.count)): run a newer verso-server"
                )
            }
            for (index, statements) in migrations.enumerated().dropFirst(applied) {
                let version = index + 1
                try await connection.query("BEGIN", logger: logger)
                do {
                    for sql in statements {
                        try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
                    }
                    if version == 1 {
                        let epoch = UUID().uuidString.lowercased()
                        try await connection.query(
                            "INSERT INTO verso_meta (id, epoch) VALUES (1, \(epoch))",
                            logger: logger
                        )
                    }
                    try await connection.query(
                        "INSERT INTO verso_migrations (version) VALUES (\(version))",
                        logger: logger
                    )
                    try await connection.query("COMMIT", logger: logger)
                } catch {
                    _ = try? await connection.query("ROLLBACK", logger: logger)
                    throw error
                }
                logger.info("migrated the PostgreSQL store", metadata: ["verso.schema": "\(version)"])
            }
        } catch {
            _ = try? await connection.query("SELECT pg_advisory_unlock(\(migrationLock))", logger: logger)
            throw error
        }
        try await connection.query("SELECT pg_advisory_unlock(\(migrationLock))", logger: logger)
    }
}
