"""Transport-free commands: words -> pydantic request -> run -> a typed Reply.

Each family lives in its own module and registers itself in `registry`; the CLI, the shell
and Slack only parse words, call `runner.execute`, and render the Reply.
"""
