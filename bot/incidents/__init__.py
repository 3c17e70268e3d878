"""Incidents: a domain of their own, fed by alert intake (bot/alerts/) and the watcher.

`channels.py` runs an incident's Slack channel (opened once, status message, updates,
resolve, archive; safe to crash and to run on several replicas), `messages.py` builds what
the channel shows (the pinned status), `postmortem.py` the postmortem (message and Markdown
file, impact, follow-ups), `actions.py` answers its buttons.
"""
