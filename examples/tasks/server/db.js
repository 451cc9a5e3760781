// One connection pool, from TASKS_DATABASE_URL (default: the local PostgreSQL's socket).
"use strict";
const { Pool } = require("pg");

const url = process.env.TASKS_DATABASE_URL || "postgresql:///tasks?host=/var/run/postgresql";
const pool = new Pool({ connectionString: url, max: 5 });

module.exports = { pool, url };
