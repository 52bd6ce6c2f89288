"""Read ``template.yaml`` (CloudFormation YAML with ``!Ref``/``!Sub``/``!GetAtt`` tags) and
resolve the intrinsic functions the local harness needs: parameters, conditions, function
environments, the state machine's ``DefinitionSubstitutions`` and the EventBridge pattern.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

_NO_VALUE = object()
_SUB_VAR = re.compile(r"\$\{([^}!]+)\}")


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser: 3x faster
    """A SafeLoader that turns short-form tags into their long form (``!Ref x`` -> ``{"Ref": "x"}``)."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in {"Ref", "Condition"}:
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


#: (resolved path, mtime, size) -> parsed document: each local stack and test parses the same template.
_PARSED: dict[tuple[str, int, int], dict[str, Any]] = {}


def load_template(path: str | Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML (or JSON) template; a fresh copy each call.

    A file parsed before (same path, modification time and size) is copied, not parsed again.
    """
    resolved = Path(path).resolve()
    stat = resolved.stat()
    cache_key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    if cache_key not in _PARSED:
        with open(resolved, encoding="utf-8") as fh:
            _PARSED[cache_key] = yaml.load(fh, Loader=_CfnLoader)  # a SafeLoader subclass
    return copy.deepcopy(_PARSED[cache_key])


def _number_text(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


def check_parameter(name: str, spec: Mapping[str, Any], value: str) -> None:
    """Refuse a parameter value CloudFormation would refuse (its type, length, range, values, pattern).

    ValueError names the parameter, the value and the constraint, so a local stack never takes
    a value a deploy would fail on.
    """

    def refuse(why: str) -> ValueError:
        return ValueError(f"template parameter {name}: {value!r} {why} (CloudFormation refuses it)")

    kind = spec.get("Type", "String")
    if kind == "Number":
        try:
            number = float(value)
        except ValueError:
            raise refuse("is not a number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise refuse(f"is below its MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise refuse(f"is above its MaxValue {spec['MaxValue']}")
    elif kind == "String":
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            raise refuse(f"is shorter than its MinLength {spec['MinLength']}")
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            raise refuse(f"is longer than its MaxLength {spec['MaxLength']}")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            raise refuse(f"does not match its AllowedPattern {spec['AllowedPattern']}")
    if "AllowedValues" in spec:
        allowed = [str(v) for v in spec["AllowedValues"]]
        if kind == "Number":
            ok = _number_text(value) in {_number_text(v) for v in allowed}
        else:
            ok = value in allowed
        if not ok:
            raise refuse(f"is not one of its AllowedValues {', '.join(allowed)}")


class SamTemplate:
    """A parsed template plus the values its parameters and resources take in one local stack.

    ``resources`` maps logical id -> {"Ref": value, "<Attr>": value} for what the harness created.
    """

    def __init__(
        self,
        path: str | Path,
        parameters: Mapping[str, Any] | None = None,
        *,
        region: str = "us-east-1",
        account: str = "123456789012",
        stack_name: str = "tryon-local",
    ) -> None:
        self.path = Path(path)
        self.root = self.path.parent
        self.doc = load_template(self.path)
        declared = self.doc.get("Parameters", {})
        unknown = sorted(set(parameters or {}) - set(declared))
        if unknown:
            raise KeyError(f"unknown template parameter(s): {', '.join(unknown)}")
        self.parameters = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
        self.parameters.update({k: str(v) for k, v in (parameters or {}).items()})
        for name, spec in declared.items():
            check_parameter(name, spec, self.parameters[name])
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::StackName": stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.resources: dict[str, dict[str, str]] = {}

    # ------------------------------------------------------------------ lookups
    def resources_of_type(self, type_name: str) -> dict[str, dict[str, Any]]:
        """Logical id -> resource for every resource of a type (conditions honoured)."""
        return {
            name: res
            for name, res in self.doc.get("Resources", {}).items()
            if res.get("Type") == type_name and self.condition_holds(res.get("Condition"))
        }

    def condition_holds(self, name: str | None) -> bool:
        """Evaluate a named condition (None holds)."""
        if name is None:
            return True
        return bool(self.resolve(self.doc["Conditions"][name]))

    def _ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name]["Ref"]
        return f"local-{name}"

    def _get_att(self, name: str, attr: str) -> Any:
        if name in self.resources and attr in self.resources[name]:
            return self.resources[name][attr]
        return f"local-{name}-{attr}"

    def _sub(self, text: str, local: Mapping[str, Any]) -> str:
        def repl(match: re.Match[str]) -> str:
            var = match.group(1)
            if var in local:
                return str(local[var])
            if "." in var and var.split(".", 1)[0] in self.doc.get("Resources", {}):
                return str(self._get_att(*var.split(".", 1)))
            return str(self._ref(var))

        return _SUB_VAR.sub(repl, text)

    # ------------------------------------------------------------------ resolution
    def resolve(self, value: Any) -> Any:
        """Resolve the intrinsic functions in ``value`` (the subset this project's template uses)."""
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Condition":
                return self.condition_holds(arg)
            if key == "Fn::GetAtt":
                return self._get_att(*arg)
            if key == "Fn::Sub":
                if isinstance(arg, list):
                    return self._sub(arg[0], {k: self.resolve(v) for k, v in arg[1].items()})
                return self._sub(arg, {})
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition_holds(cond) else no)
            if key == "Fn::Equals":
                a, b = (self.resolve(v) for v in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Split":
                return str(self.resolve(arg[1])).split(arg[0])
            if key == "Fn::Join":
                return arg[0].join(str(v) for v in self.resolve(arg[1]))
            if key == "Fn::FindInMap":
                name, top, second = (self.resolve(v) for v in arg)
                return self.doc["Mappings"][name][top][second]
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def ssm_parameters(self, path: str = "/") -> dict[str, str]:
        """The values of the template's SSM parameters (those its conditions create) under ``path``,
        by their name below it (as ``GetParametersByPath`` gives them)."""
        found = {}
        for res in self.resources_of_type("AWS::SSM::Parameter").values():
            props = self.resolve(res.get("Properties", {}))
            name = str(props.get("Name", ""))
            if name.startswith(path):
                found[name[len(path) :].lstrip("/")] = str(props["Value"])
        return found

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """A function's environment: Globals merged with its own variables, resolved to strings."""
        glob = self.doc.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        own = self.doc["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
        merged = self.resolve({**glob, **own})
        return {k: "" if v is None else str(v) for k, v in merged.items()}

    def function_property(self, logical_id: str, name: str, default: Any = None) -> Any:
        """A function property, falling back to Globals.Function."""
        props = self.doc["Resources"][logical_id].get("Properties", {})
        if name in props:
            return self.resolve(props[name])
        return self.resolve(self.doc.get("Globals", {}).get("Function", {}).get(name, default))

    def state_machine_definition(self, logical_id: str) -> str:
        """The ASL text with ``DefinitionSubstitutions`` applied, as CloudFormation does."""
        props = self.doc["Resources"][logical_id]["Properties"]
        text = (self.root / props["DefinitionUri"]).read_text(encoding="utf-8")
        subs = self.resolve(props.get("DefinitionSubstitutions", {}))
        for key, val in subs.items():
            text = text.replace("${" + key + "}", str(val))
        leftover = _SUB_VAR.findall(text)
        if leftover:
            raise ValueError(f"unresolved DefinitionSubstitutions in {props['DefinitionUri']}: {leftover}")
        json.loads(text)
        return text

    def event_pattern(self, logical_id: str, event_name: str) -> dict[str, Any]:
        """The resolved pattern of an ``EventBridgeRule`` event of a serverless resource."""
        event = self.doc["Resources"][logical_id]["Properties"]["Events"][event_name]
        return self.resolve(event["Properties"]["Pattern"])
