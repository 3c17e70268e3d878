"""queueops: Slack chat-ops for BullMQ queues.

`bot/` holds the core and its edges (configuration, the BullMQ adapter, transports);
`commands/` holds the transport-free command logic; `scheduler/` the drain cron.
"""
