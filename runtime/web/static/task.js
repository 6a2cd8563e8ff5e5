// The task page follows its task live: new log lines, the progress bar and the status
// arrive as Server-Sent Events from /tasks/{id}/events; nothing reloads the page.
"use strict";

(function () {
  const article = document.getElementById("task");
  if (!article || article.dataset.finished === "true") {
    return;
  }
  const id = article.dataset.taskId;
  const log = document.getElementById("log");
  const bar = document.getElementById("progress");
  const barText = document.getElementById("progress-text");
  const status = document.getElementById("status");
  const redispatch = document.getElementById("redispatch");
  const cancel = document.getElementById("cancel");
  const source = new EventSource(`/tasks/${id}/events?offset=${article.dataset.logOffset}`);

  function text(elementId, value) {
    const element = document.getElementById(elementId);
    if (element) {
      element.textContent = value;
    }
  }

  function when(iso) {
    return iso ? iso.replace("T", " ").slice(0, 19) : "-";
  }

  source.addEventListener("log", (event) => {
    const data = JSON.parse(event.data);
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(document.createTextNode(data.text));
    if (atBottom) {
      log.scrollTop = log.scrollHeight;
    }
  });

  source.addEventListener("progress", (event) => {
    const value = JSON.parse(event.data).progress;
    if (typeof value === "number" && isFinite(value)) {
      const share = Math.max(0, Math.min(100, value));
      bar.value = share;
      barText.textContent = `${Math.round(share)}%`;
    } else {
      barText.textContent = JSON.stringify(value);
    }
  });

  source.addEventListener("status", (event) => {
    const data = JSON.parse(event.data);
    article.dataset.status = data.status;
    status.textContent = data.status;
    status.className = `badge ${data.status}`;
    text("started_at", when(data.started_at));
    text("completed_at", when(data.completed_at));
    const attempts = document.getElementById("attempts");
    const most = article.dataset.maxAttempts;
    if (attempts && (most || data.attempts > 1)) {
      attempts.textContent = most ? `${data.attempts} of ${most}` : `${data.attempts}`;
      attempts.parentElement.hidden = false;
    }
    const next = document.getElementById("next_run_at");
    if (next) {
      next.textContent = when(data.next_run_at);
      next.parentElement.hidden = !(data.next_run_at && data.status === "pending");
    }
    if (data.finished) {
      article.dataset.finished = "true";
      text("result", data.result === null ? "—" : JSON.stringify(data.result, null, 2));
      text("took", "");
      const live = document.getElementById("live");
      if (live) {
        live.remove();
      }
      if (redispatch && redispatch.dataset.when.split(" ").includes(data.status)) {
        redispatch.hidden = false;
      }
      if (cancel) {
        cancel.hidden = true;
      }
      source.close();
    }
  });

  source.addEventListener("failure", (event) => {
    barText.textContent = JSON.parse(event.data).error;
    source.close();
  });
})();
