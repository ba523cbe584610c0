"""The benchmark suite: fastpacs and the reference Orthanc side by side, one command.

``python -m benchmarks.run`` (or ``scripts/bench``) generates a seeded DICOM
corpus once (:mod:`benchmarks.corpus`), starts each server in turn with fresh
storage, drives the same workloads against each (:mod:`benchmarks.workloads`)
and prints one table; see ``benchmarks/README.md``.
"""
