"""Task execution: the Ray Data graph and the job entry point."""
