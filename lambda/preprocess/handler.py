"""The Lambda's entry point (`handler.lambda_handler`, infra/serving_stack.py): the function lives in count_api/app.py,
which the project installs as a module, so the local API, the tests and the benchmarks import it the same way."""

from count_api.app import lambda_handler

__all__ = ["lambda_handler"]
