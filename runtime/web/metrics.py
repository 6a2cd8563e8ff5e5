"""`/metrics`: Prometheus text made from the task table on each scrape.

No worker exports anything: `TaskTableCollector` queries `_tasks` and `_workers` when
Prometheus scrapes. Gauges (`rsx_queue_pending`, `rsx_queue_running`, `rsx_queue_workers`,
`rsx_queue_max_workers`, `rsx_queue_oldest_pending_age_seconds`, `rsx_global_max_workers`)
are read fresh each time. Counters (`rsx_tasks_completed_total`, `rsx_tasks_failed_total`,
`rsx_tasks_stuck_total`, `rsx_tasks_cancelled_total`) and the histogram
`rsx_task_duration_seconds` (start to end of completed and failed runs) must never go
down, yet the daily cleanup deletes old rows; so the first scrape counts every ended row in
the table, and each later scrape adds only the rows that ended since the previous one,
bucketed by the database (`Store.ended_counts`: one aggregate row per task and status).
Rows ending in the last `LAG_S` seconds wait for the next scrape, so that a run whose end
time was taken just before a scrape but committed just after it (or written by a server
whose clock is slightly behind) is still counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from runtime.clock import utcnow
from runtime.config import Config
from runtime.queues import collect_queues
from runtime.state import Status
from runtime.store import Store
from runtime.summaries import EndedCounts

BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)
"""The duration histogram's upper bounds in seconds (`+Inf` is added)."""

LAG_S = 10.0
COUNTED = (Status.COMPLETED, Status.FAILED, Status.STUCK, Status.CANCELLED)
TIMED = (Status.COMPLETED, Status.FAILED)


class _Totals:
    """Running totals of one task: ended runs by status, and the duration histogram."""

    def __init__(self) -> None:
        self.count = dict.fromkeys(COUNTED, 0)
        self.duration_count = 0
        self.duration_sum = 0.0
        self.buckets = dict.fromkeys(BUCKETS, 0)

    def add(self, status: Status, counts: EndedCounts) -> None:
        self.count[status] += counts.count
        if status in TIMED:
            self.duration_count += counts.duration_count
            self.duration_sum += counts.duration_sum
            for bound in BUCKETS:
                self.buckets[bound] += counts.buckets.get(bound, 0)


class TaskTableCollector(Collector):
    """Metrics of one app's task table, computed on scrape."""

    def __init__(
        self,
        store: Store,
        config: Config,
        lag_s: float = LAG_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.config = config
        self.lag = timedelta(seconds=lag_s)
        self.clock = clock
        self._lock = threading.Lock()
        self._cursor: datetime | None = None
        self._totals: dict[tuple[str, str], _Totals] = {}

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        yield from self._gauges(now)
        with self._lock:
            self._advance(now - self.lag)
            yield from self._counters()

    def _advance(self, upto: datetime) -> None:
        """Add the runs that ended after the cursor and at or before `upto`."""
        if self._cursor is not None and upto <= self._cursor:
            return
        found = self.store.ended_counts(self._cursor, upto, BUCKETS)
        for (service, task, status), counts in found.items():
            self._totals.setdefault((service, task), _Totals()).add(status, counts)
        self._cursor = upto

    def _gauges(self, now: datetime) -> Iterator[Metric]:
        view = collect_queues(self.store, self.config, now)
        pending = GaugeMetricFamily(
            "rsx_queue_pending", "Claimable pending tasks of the queue.", labels=["queue"]
        )
        running = GaugeMetricFamily(
            "rsx_queue_running", "Running tasks of the queue.", labels=["queue"]
        )
        limit = GaugeMetricFamily(
            "rsx_queue_max_workers",
            "The queue's max_workers on this server (absent: not in the config).",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "rsx_queue_oldest_pending_age_seconds",
            "How long the queue's oldest pending task has waited (0: none pending).",
            labels=["queue"],
        )
        live = GaugeMetricFamily(
            "rsx_queue_workers",
            "Live or starting workers of the queue, by server.",
            labels=["queue", "server"],
        )
        for queue in view.queues:
            pending.add_metric([queue.name], queue.pending)
            running.add_metric([queue.name], queue.running)
            if queue.max_workers is not None:
                limit.add_metric([queue.name], queue.max_workers)
            waited = queue.oldest_age(now)
            age.add_metric([queue.name], 0.0 if waited is None else waited.total_seconds())
        for (server_id, queue_name), count in sorted(self.store.worker_counts(now).items()):
            live.add_metric([queue_name, str(server_id)], count)
        overall = GaugeMetricFamily(
            "rsx_global_max_workers", "global_max_workers of this server.", labels=["server"]
        )
        overall.add_metric([str(view.server_id)], view.global_max_workers)
        yield from (pending, running, live, limit, age, overall)

    def _counters(self) -> Iterator[Metric]:
        families = {
            status: CounterMetricFamily(
                f"rsx_tasks_{status.value}",
                f"Runs of the task that ended {status.value}.",
                labels=["service", "task"],
            )
            for status in COUNTED
        }
        durations = HistogramMetricFamily(
            "rsx_task_duration_seconds",
            "Start-to-end time of the task's completed and failed runs.",
            labels=["service", "task"],
        )
        for (service, task), totals in sorted(self._totals.items()):
            for status, family in families.items():
                family.add_metric([service, task], totals.count[status])
            buckets = [(_bound(b), float(totals.buckets[b])) for b in BUCKETS]
            buckets.append(("+Inf", float(totals.duration_count)))
            durations.add_metric([service, task], buckets, totals.duration_sum)
        yield from families.values()
        yield durations


def _bound(value: float) -> str:
    return repr(float(value))


def registry(store: Store, config: Config, lag_s: float = LAG_S) -> CollectorRegistry:
    """A registry holding only the task table's collector."""
    found = CollectorRegistry(auto_describe=False)
    found.register(TaskTableCollector(store, config, lag_s))
    return found
