"""The coordinator: request reader, pipeline, scheduler, verifier, store, compiler, API.

Imports `protocol/` and `network/`; never imports `node/`.
"""
