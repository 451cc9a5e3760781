// The task board: a JSON API over PostgreSQL and the bundled front end (public/).
"use strict";
const path = require("path");
const express = require("express");
const { pool } = require("./db");

const app = express();
app.use(express.json({ limit: "16kb" }));
app.use(express.static(path.join(__dirname, "..", "public")));

app.get("/health", async (_req, res) => {
  try {
    await pool.query("SELECT 1");
    res.type("text/plain").send("ok");
  } catch (err) {
    res.status(503).type("text/plain").send(`database: ${err.message}`);
  }
});

app.get("/api/tasks", async (_req, res, next) => {
  try {
    const { rows } = await pool.query(
      "SELECT id, title, done, created_at FROM tasks ORDER BY done, id");
    res.json({ tasks: rows });
  } catch (err) {
    next(err);
  }
});

app.post("/api/tasks", async (req, res, next) => {
  const title = String((req.body && req.body.title) || "").trim();
  if (!title || title.length > 200) {
    res.status(400).json({ error: "a task needs a title of 1-200 characters" });
    return;
  }
  try {
    const { rows } = await pool.query(
      "INSERT INTO tasks (title) VALUES ($1) RETURNING id, title, done, created_at", [title]);
    res.status(201).json({ task: rows[0] });
  } catch (err) {
    next(err);
  }
});

app.post("/api/tasks/:id/done", async (req, res, next) => {
  try {
    const { rows } = await pool.query(
      "UPDATE tasks SET done = true WHERE id = $1 RETURNING id, title, done, created_at",
      [Number(req.params.id)]);
    if (!rows.length) {
      res.status(404).json({ error: "no such task" });
      return;
    }
    res.json({ task: rows[0] });
  } catch (err) {
    next(err);
  }
});

app.use((err, _req, res, _next) => {
  console.error(err);
  res.status(500).json({ error: "internal error" });
});

const port = Number(process.env.TASKS_PORT || 3000);
app.listen(port, "0.0.0.0", () => console.log(`tasks: listening on ${port}`));
