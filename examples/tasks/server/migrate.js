// `npm run migrate`: apply migrations/*.sql in name order, each once (schema_migrations).
"use strict";
const fs = require("fs");
const path = require("path");
const { pool } = require("./db");

async function main() {
  const dir = path.join(__dirname, "..", "migrations");
  await pool.query("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
  const done = new Set((await pool.query("SELECT name FROM schema_migrations")).rows.map((r) => r.name));
  const files = fs.readdirSync(dir).filter((f) => f.endsWith(".sql")).sort();
  let applied = 0;
  for (const file of files) {
    if (done.has(file)) continue;
    const sql = fs.readFileSync(path.join(dir, file), "utf8");
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await client.query(sql);
      await client.query("INSERT INTO schema_migrations (name) VALUES ($1)", [file]);
      await client.query("COMMIT");
      console.log(`migrate: applied ${file}`);
      applied += 1;
    } catch (err) {
      await client.query("ROLLBACK");
      console.error(`migrate: ${file} failed: ${err.message}`);
      throw err;
    } finally {
      client.release();
    }
  }
  console.log(`migrate: ${applied} applied, ${files.length} in total`);
}

main()
  .then(() => pool.end())
  .catch(() => pool.end().then(() => process.exit(1)));
