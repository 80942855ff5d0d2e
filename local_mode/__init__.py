"""Local mode: the whole system on one machine, without an AWS account (see docs/contracts.md)."""
