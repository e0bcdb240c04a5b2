"""Measurement tools: how fast things are, and what a machine can do. Each is a script, run from the checkout
as ``.venv/bin/python bench/measure/<name>.py`` (``--help`` for its options); none is part of a run.

- overhead.py: the harness's training throughput against a bare PyTorch loop (same model, data, batches);
- transfer_speed.py: dpiat's transfer and similarity against the authors' ``iatransfer``, idle and loaded;
- copy_stream.py: the C copy's store settings on the real copy lists of transfer_speed.py's pairs;
- ghn_speed.py: GHN-2 parameter prediction time;
- loader_speed.py: images/s per loader worker for each ImageNet decoder;
- gpu_check.py: the prepared one-GPU check (harness throughput, DDP, loader), ``--smoke`` on a CPU;
- speed.py: what transfer_speed.py and copy_stream.py share (the model pairs, background busy processes).
"""
