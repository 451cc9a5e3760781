-- The production database's schema as the image has it: migrations/ up to 001_tasks.sql
-- (db/applied.sql records that). The image copies db/, not migrations/, so a pull request
-- that adds a migration is deployed on the same image and its migrate stage applies it.
CREATE TABLE tasks (
  id serial PRIMARY KEY,
  title text NOT NULL,
  done boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT '2026-01-05T09:00:00Z'
);
