"""The Postgres backend: a DB-backed job table (a runbook's `queue_jobs`) as a queue.

`PostgresBackend` (backend.py) answers the same interface as BullMQ's (bot/queues/
backend.py). What the table looks like, and what its status words mean, is `JobTable`
(layout.py); what the server holds (columns, their types, the DLQ table) is read once
(schema.py); every statement is composed with psycopg's `sql` module from those names and
parameterised (statements.py); the pool, the timeouts and the errors a person reads are
in connection.py.
"""
