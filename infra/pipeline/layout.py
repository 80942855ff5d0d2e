"""Where the pipeline keeps things in the artifacts bucket, and the name of the endpoint's one variant.

The storage stack's lifecycle rules, the roles' grants, the state machine's paths and the serving stack's
alarms all name these; docs/contracts.md lists the bucket layout.
"""

from __future__ import annotations

RUNS_PREFIX = "runs/"  # runs/<run id>/{prepare,tune,train,profiler,evaluate}/
CHECKPOINTS_PREFIX = "checkpoints/"  # checkpoints/<run id>/train/ (spot resume)
DATA_CAPTURE_PREFIX = "datacapture/"  # datacapture/<endpoint>/ (the endpoint's captured requests)
SERVING_PREFIX = "serving/"
# What serves now (training_code/serving_record.py has its fields): read by the gate, written after a deploy.
SERVING_RECORD_KEY = f"{SERVING_PREFIX}current.json"
EVALUATION_FILE = "evaluation.json"
GATE_FILE = "gate.json"  # the deploy decision the Evaluate job writes beside evaluation.json (training_code/deploy_rule.py)
# The endpoint's only production variant: the same on every update, so autoscaling and the serving alarms keep applying.
VARIANT_NAME = "AllTraffic"
