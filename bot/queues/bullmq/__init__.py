"""The BullMQ backend: read and move jobs exactly as npm bullmq (v5) lays them out.

`BullmqBackend` (backend.py) is its entry point, reached through QueueService. The PyPI
`bullmq` package does what it has (pause, resume, retry, add, Job.fromId); the Lua scripts
in `lua/` do what it lacks, each saying why at its top.
"""
