"""Alerts: intake (Alertmanager, generic JSON, the watcher) and the durable alert stream
whose worker hands each event to the incidents (bot/incidents/)."""
