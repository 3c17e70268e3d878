"""The BullMQ adapter: read and move jobs exactly as npm bullmq (v5) lays them out.

`QueueService` (service.py) is the one entry point the commands use. The PyPI `bullmq`
package does what it has (pause, resume, retry, add, Job.fromId); the Lua scripts in
`lua/` do what it lacks, each saying why at its top.
"""
