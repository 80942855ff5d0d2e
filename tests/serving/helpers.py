"""Test-only helpers for the handler tests: a photo whose shade steers the scripted model's count, and the
handler's environment pointed at the endpoint emulator (local_mode/scripted_model.ScriptedEndpoint)."""

from __future__ import annotations

import io

from count_api.settings import ApiSettings, Powertools, function_environment
from PIL import Image

from local_mode.endpoint_server import LOOPBACK_CREDENTIALS
from local_mode.scripted_model import ScriptedEndpoint

# Small and quick: 4 images per request, one 1 s attempt per endpoint call (the slow mode answers after 2 s).
TEST_SETTINGS = dict(max_images_per_request=4, invoke_timeout_s=1, invoke_max_attempts=1)


def photo(fmt: str = "JPEG", size: tuple[int, int] = (320, 240), shade: int = 200) -> bytes:
    """A small bin-like photo: a flat shade with a darker box (the shade steers the scripted model's count)."""
    image = Image.new("RGB", size, (shade, shade, shade))
    image.paste((shade // 2, 40, 40), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def handler_environment(endpoint: ScriptedEndpoint) -> dict[str, str]:
    """The handler's environment variables, pointed at the emulated endpoint."""
    settings = ApiSettings(endpoint_name=endpoint.endpoint_name, **TEST_SETTINGS)
    powertools = Powertools(metrics_namespace="InventoryMonitorTest", outside_lambda=True)
    return {**function_environment(settings, powertools), **endpoint.client_environment(), **LOOPBACK_CREDENTIALS}
