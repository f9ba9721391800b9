"""Evaluation sets: checking and sharding a task's sets (`plan`), reading them as a stream of items
(`read`), and the built-in sets by name (`builtin`)."""
