"""Inference: requests to OpenAI-compatible services (`client`), the prompt budget of hosted engines
(`prompt_budget`) and the Ray Data stage that answers each item (`stage`)."""
