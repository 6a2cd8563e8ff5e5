// The overview's counts refresh every few seconds from /overview.json.
"use strict";

(function () {
  const EVERY_MS = 3000;

  function age(seconds) {
    if (seconds === null) {
      return "-";
    }
    if (seconds < 60) {
      return `${seconds.toFixed(1)}s`;
    }
    const whole = Math.floor(seconds);
    if (whole < 3600) {
      return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, "0")}s`;
    }
    if (whole < 86400) {
      return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")}m`;
    }
    return `${Math.floor(whole / 86400)}d${String(Math.floor((whole % 86400) / 3600)).padStart(2, "0")}h`;
  }

  function show(data) {
    const busiest = Math.max(1, ...data.queues.map((queue) => queue.pending));
    for (const queue of data.queues) {
      const row = document.querySelector(`tr[data-queue="${CSS.escape(queue.queue)}"]`);
      if (!row) {
        continue;
      }
      row.querySelector('[data-field="pending"]').textContent = queue.pending;
      row.querySelector('[data-field="running"]').textContent = queue.running;
      row.querySelector('[data-field="workers"]').textContent = queue.workers;
      row.querySelector('[data-field="oldest"]').textContent = age(queue.oldest_pending_age_seconds);
      const pending = row.querySelector('[data-bar="pending"]');
      pending.max = busiest;
      pending.value = queue.pending;
      row.querySelector('[data-bar="workers"]').value = queue.workers;
    }
    document.getElementById("workers-in-use").textContent = data.workers;
    const counted = (n) => (n >= data.counts_cap ? `${n}+` : `${n}`);
    document.getElementById("count-failed").textContent = counted(data.counts.failed);
    document.getElementById("count-stuck").textContent = counted(data.counts.stuck);
    document.getElementById("updated").textContent = data.generated_at.replace("T", " ").slice(0, 19);
  }

  async function refresh() {
    try {
      const response = await fetch("/overview.json", { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        show(await response.json());
      }
    } catch (error) {
      // The next refresh tries again.
    }
  }

  setInterval(refresh, EVERY_MS);
})();
