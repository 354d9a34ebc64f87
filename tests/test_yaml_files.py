"""The shipped YAML (catalogs, presets) reads the same through the fast reader as through PyYAML's own."""

import yaml

from easytune.yaml_files import read_yaml
from support import ROOT


def test_every_shipped_yaml_file_reads_as_pyyaml_reads_it():
    files = sorted((ROOT / "easytune" / "locales").rglob("*.yaml")) + sorted((ROOT / "presets").rglob("*.yaml"))
    assert len(files) > 20
    for path in files:
        assert read_yaml(path) == yaml.safe_load(path.read_text(encoding="utf-8")), path
