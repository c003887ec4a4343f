"""Built-in preprocessing: request payloads (JSON, XML, binary) -> Triton input tensors.

XML is parsed with defusedxml only: payloads come from the network, and the stdlib parser
expands entities (billion laughs) and may resolve external ones.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from tritium.dataplane.convert import input_from_json, inputs_from_json
from tritium.dataplane.errors import ApiError, bad_request
from tritium.dataplane.tensors import parse_v2_request

JSON_TYPES = ("application/json", "")
XML_TYPES = ("application/xml", "text/xml")
BINARY_TYPES = ("application/octet-stream",)
BASE64_TYPES = ("text/plain", "application/base64")


def unsupported(content_type: str, expected: str) -> ApiError:
    return ApiError(415, "unsupported_media_type",
                    f"this service takes {expected} payloads, not {content_type or '(none)'}", field="Content-Type")


def parse_xml_inputs(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """<request><input name="x">1 2 3</input>...<parameter name="k">v</parameter></request>.

    Values are whitespace- or comma-separated numbers, or text for BYTES inputs (typed later by the
    model's metadata); an input with a `shape` attribute ("2,3") is reshaped.
    """
    try:
        root = SafeET.fromstring(body)
    except DefusedXmlException as exc:
        raise bad_request(f"forbidden XML construct: {type(exc).__name__}", "body") from None
    except SafeET.ParseError as exc:
        raise bad_request(f"body is not well-formed XML: {exc}", "body") from None
    inputs: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for el in root.iter():
        name = el.get("name")
        if el.tag == "input":
            if not name:
                raise bad_request("every <input> needs a name attribute", "input")
            text = (el.text or "").strip()
            if el.get("type", "").lower() in ("text", "bytes", "string"):
                inputs[name] = text
                continue
            tokens = text.replace(",", " ").split()
            try:
                values: Any = [float(t) if any(c in t for c in ".eE") else int(t) for t in tokens]
            except ValueError:
                values = text  # not numbers: text (a BYTES input)
            shape = el.get("shape")
            if shape and isinstance(values, list):
                try:
                    dims = [int(d) for d in shape.replace(" ", "").split(",") if d]
                    values = np.asarray(values).reshape(dims).tolist()
                except ValueError as exc:
                    raise bad_request(f"shape {shape!r} does not fit the values: {exc}", f"inputs.{name}") from None
            inputs[name] = values
        elif el.tag == "parameter" and name:
            params[name] = (el.text or "").strip()
    if not inputs:
        raise bad_request("no <input> elements in the XML body", "body")
    return inputs, params


def _single_input(model: dict[str, Any], parameters: dict[str, Any]) -> tuple[str, str, list[int]]:
    specs: dict[str, Any] = model.get("inputs", {})
    name = parameters.get("input")
    if name is None:
        if len(specs) != 1:
            raise bad_request(f"the model has {len(specs)} inputs: name one with the 'input' parameter", "input")
        name = next(iter(specs))
    if name not in specs:
        raise bad_request(f"unknown input {name!r}", "input")
    datatype, shape = specs[name]
    return name, datatype, shape


def binary_inputs(body: bytes, content_type: str, model: dict[str, Any], parameters: dict[str, Any],
                  header_length: int | None = None) -> dict[str, np.ndarray]:
    """Raw bytes, base64 text or a v2 binary-extension body -> tensors."""
    if header_length is not None:
        return parse_v2_request(body, header_length).inputs
    if content_type in BASE64_TYPES:
        try:
            body = base64.b64decode(body.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("body is not valid base64", "body") from None
    name, datatype, shape = _single_input(model, parameters)
    if datatype == "BYTES":
        arr = np.empty(1, dtype=np.object_)
        arr[0] = body
        return {name: input_from_json(name, arr.tolist(), datatype, shape, f"inputs.{name}")}
    return {name: input_from_json(name, {"b64": base64.b64encode(body).decode()}, datatype, shape, f"inputs.{name}")}


class BuiltinPre:
    """The built-in pre stage for one payload format (spec.preprocess.builtin.format)."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt

    def json_inputs(self, content_type: str, body: bytes | None, inputs: Any,
                    parameters: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The request's inputs as JSON values (for schema validation), from JSON or XML."""
        if inputs is not None:
            if self.format == "xml":
                raise unsupported("application/json", "XML")
            return inputs, parameters
        if self.format == "xml":
            if content_type not in XML_TYPES:
                raise unsupported(content_type, "XML (application/xml)")
            xml_inputs, xml_params = parse_xml_inputs(body or b"")
            return xml_inputs, {**xml_params, **parameters}
        return None, parameters

    def tensors(self, content_type: str, body: bytes | None, values: Any, model: dict[str, Any],
                parameters: dict[str, Any], header_length: int | None = None) -> dict[str, np.ndarray]:
        if values is not None:
            return inputs_from_json(values, model)
        if self.format == "binary":
            if content_type not in (*BINARY_TYPES, *BASE64_TYPES) and header_length is None:
                raise unsupported(content_type, "binary (application/octet-stream or base64 text/plain)")
            return binary_inputs(body or b"", content_type, model, parameters, header_length)
        raise unsupported(content_type, "JSON (application/json)")

