"""Serving: an OpenAI-compatible HTTP server with continuous batching and streaming, and a web page.

    python -m valle.serve ckpt=model.pt            # then open http://127.0.0.1:8000/

`engine` batches requests step by step, `voices` keeps the voices, `metrics` counts, `app` is the
FastAPI app; `valle.cli.serve` puts them together (docs/serving.md).
"""
