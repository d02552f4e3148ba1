"""Helpers for medloss's tests and benchmarks only: oracles and input generators. Not shipped in the wheel."""
