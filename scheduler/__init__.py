"""The drain cron (APScheduler jobs, leader lease, tick history) lives here.

It reports each tick through a callback the wiring registers, so it never imports Slack
or the alert code (the layering tests/test_layers.py checks).
"""
