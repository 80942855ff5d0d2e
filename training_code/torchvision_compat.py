"""The one place that imports torchvision (DESIGN.md, "torch / torchvision").

torchvision 0.28.0 from PyPI is a CUDA build; on the CPU torch wheel its import fails with
`RuntimeError: operator torchvision::nms does not exist` (pytorch/pytorch#122494) because
torchvision/_meta_registrations.py registers meta kernels for ops the CPU library lacks. Registering an
empty module under that name first lets models and transforms import (ops.nms and io.decode_jpeg stay
unavailable; nothing here uses them). On a matching install (SageMaker DLCs) the plain import works and
nothing is patched.
"""

from __future__ import annotations

import sys
import types
from typing import Any


def import_torchvision() -> Any:
    """Return the torchvision module, applying the workaround only when the plain import fails."""
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision
    return torchvision
