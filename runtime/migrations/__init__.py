"""The task tables' Alembic migrations, run by `python -m runtime.migrate` only.

`env.py` runs the revisions of `versions/` on the connection that `runtime.migrate` hands
it in `config.attributes["connection"]`, with `_tasks_alembic_version` as the version
table. Revisions are written by hand, one per schema change, and never import
`runtime.schema`: each keeps the tables as they were at its time.
"""
