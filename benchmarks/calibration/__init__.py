"""Calibration study of the analyzer's tests and intervals: simulated runs with the dependence of a real one."""
