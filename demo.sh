#!/usr/bin/env bash
# Install rsxgen into .venv and run the demo app of fixtures/demo end to end on SQLite:
# build the typed client, dispatch a transcode, let the processor run it, show its status.
set -euo pipefail
cd "$(dirname "$0")"
root=$PWD

python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
py=$root/.venv/bin/python

cd fixtures/demo
rm -rf storage
echo "\$ rsxgen build"
"$root/.venv/bin/rsxgen" build

echo
echo "\$ python -m runtime.run report_service generate_report --period=weekly"
"$py" -m runtime.run report_service generate_report --period=weekly

echo
echo "# dispatch from application code, through the generated typed client"
task_id=$("$py" -c '
from generated import tasks
print(tasks.video_service.transcode.dispatch(video_id=123, quality="low"))
')
echo "dispatched task $task_id"

echo
echo "\$ python -m runtime.process        # what cron runs every minute"
"$py" -m runtime.process

echo
echo "\$ python -m runtime.status $task_id --follow"
"$py" -m runtime.status "$task_id" --follow

echo
echo "\$ python -m runtime.status $task_id --json"
"$py" -m runtime.status "$task_id" --json

echo
echo "\$ python -m runtime.schedules"
"$py" -m runtime.schedules
