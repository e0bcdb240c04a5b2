"""dpiat-bench's experiment layer: config -> run -> run folder -> aggregate -> table.

Entry points (scripts, run from the checkout): run.py, sweep.py, aggregate.py, compare.py, selection.py,
train_source.py, train_ghn.py, structure_index.py;
the speed and device measurement tools are scripts in measure/. Internals: config.py (the typed schema),
layout.py (where runs live), errors.py, seeding.py, baselines.py, files.py, and the sub-packages data/,
running/, planning/, results/. docs/developers.md follows a run through them.
"""
