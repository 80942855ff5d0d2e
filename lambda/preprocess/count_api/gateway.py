"""How API Gateway fronts the function: the one home of the stage name and the binary media types, read by the
serving stack (infra/serving_stack.py) and the local gateway (local_mode/api_server.py)."""

from __future__ import annotations

# The stage the REST API deploys: the stage URL is https://<api>.execute-api.<region>.amazonaws.com/prod/.
STAGE_NAME = "prod"
# Bodies of these Content-Types reach the function base64-encoded (isBase64Encoded); others arrive as text.
BINARY_MEDIA_TYPES = ("image/jpeg", "image/png")
