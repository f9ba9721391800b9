"""Ray Serve applications that host candidate and judge models (vLLM behind an OpenAI API).

Models hosted by rayeval plug into the same path as service URLs: a hosted model is deployed,
exposes an OpenAI-compatible endpoint, and is then evaluated like any `kind: service` model.
"""
