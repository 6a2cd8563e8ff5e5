"""What the executor and its supervisor tell each other, as typed messages over pipes.

One message per line. From the executor: `start <task id> <timeout>` when a task was
claimed, `end <task id>` when it was recorded, `retired` when the worker gave up its slot
(queue empty long enough, or another queue needs the slot), `stopping` after
SIGTERM/SIGINT. From the supervisor, on a pipe of its own: `cancel <task id>` when a
cancel of the running task was requested.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """The kinds of message."""

    START = "start"
    END = "end"
    RETIRED = "retired"
    STOPPING = "stopping"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Message:
    """One message; `task_id` for START, END and CANCEL, `timeout` (seconds) for START."""

    kind: Kind
    task_id: int | None = None
    timeout: int | None = None

    def encode(self) -> bytes:
        """The message as one line of the pipe."""
        line = self.kind.value
        if self.task_id is not None:
            line = f"{line} {self.task_id}"
        if self.timeout is not None:
            line = f"{line} {self.timeout}"
        return f"{line}\n".encode()

    @classmethod
    def decode(cls, line: bytes) -> Message:
        """A message from one line (without its newline); ValueError if malformed."""
        kind, *rest = line.decode().split()
        numbers = [int(word) for word in rest]
        message = cls(Kind(kind), *numbers)
        with_id = message.kind in (Kind.START, Kind.END, Kind.CANCEL)
        if with_id != (message.task_id is not None) or (
            (message.kind is Kind.START) != (message.timeout is not None)
        ):
            raise ValueError(f"malformed message: {line!r}")
        return message


def start(task_id: int, timeout: int) -> Message:
    """A task was claimed and is about to run."""
    return Message(Kind.START, task_id, timeout)


def end(task_id: int) -> Message:
    """A task's end was recorded."""
    return Message(Kind.END, task_id)


def cancel(task_id: int) -> Message:
    """A cancel of the running task was requested (supervisor to executor)."""
    return Message(Kind.CANCEL, task_id)


def read_ready(fd: int) -> bytes:
    """Everything the pipe `fd`, set non-blocking, holds now, without waiting for more (or
    for its end, which a forked child may keep open)."""
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def split(buffer: bytes) -> tuple[list[Message], bytes]:
    """The whole messages at the start of `buffer`, and the rest (a line still arriving)."""
    *lines, rest = buffer.split(b"\n")
    return [Message.decode(line) for line in lines], rest
