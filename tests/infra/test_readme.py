"""The README's promises that can drift: the configuration table and the two set-up commands."""

from __future__ import annotations

import re

from infra.config import markdown_table
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_configuration_table_matches_config_module_and_cdk_json(default_context):
    table = re.search(r"<!-- config-table:start -->\n(.*?)\n<!-- config-table:end -->", README, re.S)
    assert table, "README lost its configuration table markers"
    assert table.group(1) == markdown_table(default_context), "README's table is stale: run `python -m infra.config`"


def test_readme_starts_with_the_two_setup_commands():
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.strip().splitlines()] == [["make", "demo"], ["make", "test"]]


def test_makefile_has_every_target_the_readme_names():
    makefile = (ROOT / "Makefile").read_text()
    for target in sorted(set(re.findall(r"`make ([a-z-]+)", README))):
        assert re.search(rf"^{target}:", makefile, re.M), f"README names `make {target}` but the Makefile has no such target"
