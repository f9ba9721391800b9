"""Ray Serve applications that host candidate and judge models (vLLM behind an OpenAI API).

Models hosted by rayeval plug into the same path as service URLs: a hosted model is deployed,
exposes an OpenAI-compatible endpoint, and is then evaluated like any `kind: service` model.

- `llm`: a hosted ModelSpec -> `ray.serve.llm` LLMConfig and OpenAI app (also a `serve run` builder).
- `hosting`: deploy / share / health-check / delete the applications of a task's models.
- `builtins`: the registry of built-in models and where each model's weights come from.
- `tiny_model`: the tiny random-weights model built locally for the quick start and the tests.
"""
