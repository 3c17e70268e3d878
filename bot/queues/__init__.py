"""The queues queueops works on, behind one interface (backend.py).

`QueueService` (service.py) is the one entry point the commands use; it routes each
request to the backend owning the queue: `bullmq/` (BullMQ on Redis) or `postgres/` (a
DB-backed job table). What is shared lives here: the records both return (models.py), how
a queue is addressed (keys.py) and queueops' own depth samples (samples.py).
"""
