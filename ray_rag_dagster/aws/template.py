"""The CloudFormation template and its parameters, as the deploy commands send them.

The template is kept as readable YAML with CloudFormation's short tags (``!Ref``, ``!Sub``...). It is sent
to CloudFormation as minified JSON: the same document, well under the 51,200-byte limit of a template
passed inline (a larger one would need an S3 upload before the stack's own bucket exists).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra_cfn"
DEFAULT_TEMPLATE = INFRA_DIR / "template.yaml"
DEFAULT_PARAMETERS = INFRA_DIR / "parameters.json"
MAX_INLINE_TEMPLATE_BYTES = 51_200


class CloudFormationLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation's short tags as their long ``Fn::`` forms."""


def _construct_intrinsic(loader: CloudFormationLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)  # !GetAtt Database.Endpoint.Address -> [Database, Endpoint.Address]
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """The template as a plain dict with intrinsic functions in their long form."""
    return yaml.load(path.read_text(), Loader=CloudFormationLoader)


def template_body(path: Path = DEFAULT_TEMPLATE) -> str:
    """The template as the minified JSON the deploy commands send."""
    body = json.dumps(load_template(path), separators=(",", ":"))
    if len(body.encode()) > MAX_INLINE_TEMPLATE_BYTES:
        raise ValueError(f"{path}: {len(body.encode())} bytes as JSON, over CloudFormation's inline limit")
    return body


def load_parameters(path: Path = DEFAULT_PARAMETERS) -> dict[str, str]:
    """A parameters file in the AWS CLI's format: ``[{"ParameterKey": ..., "ParameterValue": ...}]``."""
    return {item["ParameterKey"]: str(item["ParameterValue"]) for item in json.loads(path.read_text())}
