"""Differential tests: the same requests to fastpacs and to the reference Orthanc 1.10.1, answers compared."""
