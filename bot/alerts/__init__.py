"""Alerts: intake (Alertmanager, generic JSON, the watcher), the durable alert stream, and
incident channels in Slack."""
