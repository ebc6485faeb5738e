"""Launch gcloud-tasks-emulator bound to 127.0.0.1, behaving like Cloud Tasks where Heimdex relies on it.

Runs under the emulator's own virtualenv (it pins protobuf<5), so it imports nothing from heimdex:
    .venv-tasks/bin/python tasks_emulator.py start --port P -r N [--min-backoff S] [--max-backoff S]

Three patches over the emulator as released (0.6.2):
- it binds every interface by itself: bind 127.0.0.1 only;
- it retries a failed task (non-2xx answer or no answer, e.g. a stage process that died mid-request)
  every ~0.1 s until `-r` retries are spent: back off instead, doubling from `--min-backoff` up to
  `--max-backoff`, as a queue's retry_config does, so a retry can outlast a process restart;
- it accepts two tasks of the same name: answer ALREADY_EXISTS while a task of that name is queued or
  was dispatched before (Cloud Tasks keeps the name of a finished or deleted task for about an hour).
"""

import sys
import threading
from datetime import UTC, datetime, timedelta

import grpc._server

_add_insecure_port = grpc._server._Server.add_insecure_port


def _loopback_only(self, address):
    return _add_insecure_port(self, address.replace("[::]", "127.0.0.1"))


grpc._server._Server.add_insecure_port = _loopback_only


def _take_float(flag, default):
    if flag in sys.argv:
        i = sys.argv.index(flag)
        value = float(sys.argv[i + 1])
        del sys.argv[i : i + 2]
        return value
    return default


def patch(min_backoff, max_backoff):
    from gcloud_tasks_emulator import server
    from google.api_core.exceptions import AlreadyExists

    lock = threading.Lock()
    names = set()  # every task name ever created: queued, done, given up (the emulator's lifetime)
    create_task = server.QueueState.create_task
    submit_task = server.QueueState.submit_task

    def create_task_once(self, queue, task):
        with lock:
            if task.name and task.name in names:
                raise AlreadyExists(f"task {task.name} exists or existed recently")
            created = create_task(self, queue, task)
            names.add(created.name)
            return created

    def submit_task_with_backoff(self, task_name, force_run=False):
        before = None
        queue_name = task_name.rsplit("/", 2)[0]
        for t in self._queue_tasks.get(queue_name, []):
            if t.name == task_name:
                before = t.dispatch_count
        task = submit_task(self, task_name, force_run)
        failed = 400 <= (task.last_attempt.response_status.code or 0) < 600
        if before is not None and task.dispatch_count > before and failed:
            delay = min(min_backoff * 2 ** (task.dispatch_count - 1), max_backoff)
            task.schedule_time = datetime.now(UTC) + timedelta(seconds=delay)
        return task

    server.QueueState.create_task = create_task_once
    server.QueueState.submit_task = submit_task_with_backoff


if __name__ == "__main__":
    patch(_take_float("--min-backoff", 0.1), _take_float("--max-backoff", 0.1))

    from gcloud_tasks_emulator.__main__ import main

    main()
