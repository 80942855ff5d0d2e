"""Tests of the local runner (`make demo`)."""
