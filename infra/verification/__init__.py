"""Bulk bin verification on AWS: the "Verify bins" state machine (docs/verification.md)."""
