"""The volunteer node: LLM engine, search and retrieval, task executors, runtime.

Imports `protocol/` and `network/`; never imports `coordinator/`.
"""
