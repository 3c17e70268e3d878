"""The Slack transport: the Bolt app, Block Kit rendering, roles from user groups, and
confirmations. It renders what commands return; no command logic lives here."""
