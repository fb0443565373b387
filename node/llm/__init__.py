"""The node's LLM subsystem: models, hardware plan, engine, grammars, re-scoring.

Layout (data flow order):
- `gguf.py`      read a GGUF header without loading the model;
- `models.py`    model string -> GGUF file + sha256 (cached);
- `hardware.py`  RAM / cores / GPU -> which models to load and how;
- `backend.py`   the only module that touches llama-cpp-python (blocking);
- `speed.py`     start-up self-benchmark and the deadline rules;
- `engine.py`    loaded models, slots, trio <-> worker threads;
- `schema.py`    JSON schema -> GBNF grammar, bounds, post-validation;
- `structured.py` prompt + schema -> validated JSON (used by executors);
- `rescore.py`   re-scoring arithmetic for the validate kind (the teacher-forced
                 pass itself runs in `backend.py`).

Executors (`node/executors/`) use this package; nothing here knows about tasks
beyond `DecodingParams` and `ModelInfo` from `protocol/`.
"""
