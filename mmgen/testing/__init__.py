"""Helpers for tests and benchmarks only: demo prompt fixtures, a stub OpenAI-compatible server and
tiny random Hugging Face models. No stage imports anything from here."""
