"""From a spec to a dataset: the stages of a job, each a batch of network tasks.

spec -> question_gen -> search -> retrieve -> curate -> synthesize -> deliver (compile),
one module per stage (ungrounded specs skip search, retrieve and curate; jobs
handed in as a spec file skip spec). Each
stage module turns the verified outputs of the stage before it into task
payloads; `job.py` drives them through the scheduler and persists progress;
`sizing.py` says how many tasks each stage plans for a spec.
"""
