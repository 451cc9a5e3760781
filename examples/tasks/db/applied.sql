-- What server/migrate.js records: the image's schema is migrations/001_tasks.sql.
CREATE TABLE schema_migrations (name text PRIMARY KEY,
                                applied_at timestamptz NOT NULL DEFAULT now());
INSERT INTO schema_migrations (name) VALUES ('001_tasks.sql');
