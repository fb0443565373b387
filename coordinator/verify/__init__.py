"""Verification: is a volunteer's result trustworthy, and is a row good enough?

One concept per module, in the order a result meets them:
- `checks`: per-result rules (lease holder, lease live, kind, schema, sizes, model, decoding echo);
- `quorum`: majority over fuzzy-compared replicas of deterministic kinds;
- `rescoring`: replica comparison and prefill re-scoring decisions for generative kinds;
- `gates`: grounding, dedup, length and language filters on accepted rows, and the page cap;
- `questions`: whether an answer-first row's question is well formed and answered by its sentence;
- `injection`: rows that carry a retrieved page's instructions to the model;
- `text`: the normalised text and content words the gates compare;
- `reputation`: per-node score, blacklist, adaptive replication;
- `receipts`: signed receipts for judged results, and their offline audit;
- `reasons`: the typed refusal codes all of them emit.
Everything here is pure (no store, no network, no clock); the scheduler wires it up.
"""
