"""CDK stacks and constructs of Inventory Monitor (the pipeline reads the search space and the metric regexes
from training_code/, whose modules the project installs as top-level modules: pyproject.toml)."""
