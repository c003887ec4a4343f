"""The committed API reference matches the models."""

from pathlib import Path

from tritium.api.reference import reference_markdown

REPO = Path(__file__).resolve().parents[2]


def test_api_reference_is_up_to_date() -> None:
    committed = (REPO / "docs/api-reference.md").read_text()
    assert committed == reference_markdown(), "docs/api-reference.md is stale: run `make crds`"


def test_reference_lists_every_section_and_rule() -> None:
    text = reference_markdown()
    for field in ("spec.model.storageUri", "spec.autoscaling.minReplicas", "spec.rollout.canaryPercent",
                  "spec.security.tls.minVersion", "status.conditions[].reason"):
        assert f"`{field}`" in text
    assert "minReplicas must be <= maxReplicas" in text
