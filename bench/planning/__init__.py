"""Sweeps: a grid of runs planned (:mod:`~bench.planning.plan`), written as task lists
(:mod:`~bench.planning.manifests`), and run here (:mod:`~bench.planning.local`) or submitted to SLURM
(:mod:`~bench.planning.slurm`); its GPU-hours estimated before (:mod:`~bench.planning.gpu_hours`).
"""
