"""Running one run: from a composed config to a finished run folder.

:mod:`~bench.running.target` (what bench/run.py calls) -> :mod:`~bench.running.harness` (decide, record,
train) -> :mod:`~bench.running.lit` (Lightning). Identity and the start/resume/skip/refuse decision:
:mod:`~bench.running.folder`; run.json: :mod:`~bench.running.record`; per epoch:
:mod:`~bench.running.recorder`; source networks: :mod:`~bench.running.sources`; provenance:
:mod:`~bench.running.provenance` (the CPU and load: :mod:`~bench.running.host`).
"""
