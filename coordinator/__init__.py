"""The coordinator: planner, pipeline, scheduler, verifier, store, compiler, API.

Imports `protocol/` and `network/`; never imports `node/`.
"""
