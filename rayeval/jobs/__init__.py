"""Running a task: checks before anything is written (`prepare`), the cluster session of a run
(`session`), the Ray Data graph (`pipeline`) and its sink (`sink`), the run itself (`runner`), the
job entry point (`run_task`) and submission as a Ray job (`submit`)."""
