"""Parts of the serving stack (infra/serving_stack.py)."""
