"""Constructs of the training pipeline stack: code asset, container images, IAM, the state machine."""
