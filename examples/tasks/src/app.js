// The task board's front end (bundled into public/app.js by `npm run build`).
import { summary, taskItem } from "./render.js";

const list = document.querySelector("#tasks");
const status = document.querySelector("#summary");
const form = document.querySelector("#new-task");

async function load() {
  const res = await fetch("/api/tasks");
  if (!res.ok) throw new Error(`GET /api/tasks answered ${res.status}`);
  const { tasks } = await res.json();
  list.replaceChildren(...tasks.map((t) => taskItem(t, markDone)));
  status.textContent = summary(tasks);
}

async function markDone(task) {
  await fetch(`/api/tasks/${task.id}/done`, { method: "POST" });
  await load();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = form.querySelector("input[name=title]");
  const res = await fetch("/api/tasks", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ title: input.value }),
  });
  if (res.ok) {
    input.value = "";
    document.querySelector("#flash").textContent = "Task added";
  }
  await load();
});

load();
