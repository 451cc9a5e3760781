// DOM for the board: one list item per task.
export function taskItem(task, onDone) {
  const li = document.createElement("li");
  li.className = task.done ? "task done" : "task";
  li.dataset.id = String(task.id);
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = task.title;
  li.append(title);
  if (!task.done) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "mark-done";
    button.textContent = "Done";
    button.addEventListener("click", () => onDone(task));
    li.append(button);
  }
  return li;
}

export function summary(tasks) {
  const open = tasks.filter((t) => !t.done).length;
  return `${open} open, ${tasks.length - open} done`;
}
