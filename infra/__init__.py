"""CDK stacks and constructs of Inventory Monitor.

The pipeline reads the search space and the metric regexes from training_code/ (the SageMaker source dir,
whose modules import each other by top-level name), so importing `infra` puts that folder on sys.path once,
here, for app.py, `python -m infra.cost` and the tests alike.
"""

import sys
from pathlib import Path

_TRAINING_CODE = str(Path(__file__).resolve().parents[1] / "training_code")
if _TRAINING_CODE not in sys.path:
    sys.path.append(_TRAINING_CODE)
