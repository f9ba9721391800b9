"""Custom Evaluation mode: the user's own evaluation program, run once per configuration and model."""
