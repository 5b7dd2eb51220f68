"""The VLM side of generation: backends (client), the async engine, image encoding, error
classes, cost estimates, the resume log, dry runs and the OpenAI Batch API."""
