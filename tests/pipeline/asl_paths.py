"""A static walk of a rendered JSONPath state machine: which paths are guaranteed present, and which
run-time failures could end the execution without a notification.

Why: moto executes the definition leniently (a Choice rule on a missing path evaluates to false there;
an intrinsic failure in a Task's ResultSelector is caught by the Task's Catch), so an executed test can
pass for a definition that fails on AWS. By the AWS documentation
(https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html): Pass and Wait states
raise no Catch-able errors and only Task, Parallel and Map states have Catch; `States.ALL` does not match
`States.Runtime`; a missing path in a Choice rule (https://docs.aws.amazon.com/step-functions/latest/dg/state-choice.html,
"If the state input doesn't contain the $.type field, the execution fails"), in Parameters or in a
ResultSelector, and an intrinsic function given the wrong kind of value, fail the execution at once.

The walk follows every path from StartAt, carrying what is known at each state:
- `present`: paths that exist (written by a Pass/Parameters/Result, by a ResultSelector from a member the
  service's botocore model marks required, by a Catch's ResultPath, or learnt on a Choice branch from an
  IsPresent / type test);
- `types`: object / string / number / array / boolean for some of them;
- `if_present`: the type a path has whenever it is there (an optional member in the botocore model, an
  optional input field checked to be an object), learnt as a type when IsPresent proves it there;
- `texts`: "path T holds States.JsonToString(path P)", so that StringMatches(T, "{*") proves P an object.
It reports:
- a Choice rule that reads a path neither present nor guarded by an earlier IsPresent in the same And;
- a Choice without Default (States.NoChoiceMatched cannot be caught in a Choice);
- a Pass or Task that reads a path not present, or calls an intrinsic on a value not known to have the
  type the function needs (JsonMerge: objects; StringSplit: string; ArrayLength: array; MathAdd: numbers);
  StringToJson anywhere but a Task's ResultSelector (a Pass cannot Catch its failure);
- a Task without a States.ALL Catch, or whose States.ALL Catch does not lead to `notify_state`;
- a Fail reached after a SageMaker job started without passing through a notification, a Succeed reached
  without one, and a Fail before any job whose error is not `InvalidExecutionInput`.
Limits (said, not hidden): Parallel/Map states are reported as unsupported; types of Choice comparisons
(e.g. NumericLessThan on a present string) are not checked; payload size limits are not modelled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import botocore.session

ROOT = "$"
SNS_PUBLISH = "arn:aws:states:::sns:publish"
_BOTO_SERVICE = {"applicationautoscaling": "application-autoscaling"}
_SHAPE_TYPES = {
    "structure": "object",
    "map": "object",
    "list": "array",
    "string": "string",
    "timestamp": "string",
    "blob": "string",
    "integer": "number",
    "long": "number",
    "float": "number",
    "double": "number",
    "boolean": "boolean",
}


# --- facts ------------------------------------------------------------------------------------------------


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _under(path: str, root: str) -> str | None:
    """The rest of `path` below `root` ("" for root itself), or None."""
    if root == ROOT:
        return path.removeprefix(ROOT)
    if path == root:
        return ""
    if path.startswith(root + "."):
        return path[len(root) :]
    return None


@dataclass(frozen=True)
class Facts:
    present: frozenset[str] = frozenset([ROOT])
    types: frozenset[tuple[str, str]] = frozenset()
    if_present: frozenset[tuple[str, str]] = frozenset()  # (path, type): its type whenever it is there
    texts: frozenset[tuple[str, str]] = frozenset()  # (text path, source path)

    def has(self, path: str) -> bool:
        return path.startswith("$$") or path in self.present

    def type_of(self, path: str) -> str | None:
        return next((t for p, t in self.types if p == path), None)

    def below(self, root: str) -> Facts:
        """The facts about the value at `root`, re-rooted at "$"."""

        def move(path: str) -> str | None:
            rest = _under(path, root)
            return None if rest is None else ROOT + rest

        return Facts(
            frozenset(m for p in self.present if (m := move(p))),
            frozenset((m, t) for p, t in self.types if (m := move(p))),
            frozenset((m, t) for p, t in self.if_present if (m := move(p))),
            frozenset((a, b) for t, s in self.texts if (a := move(t)) and (b := move(s))),
        )

    def placed_at(self, root: str) -> Facts:
        """These facts (rooted at "$") moved to `root`."""

        def move(path: str) -> str:
            return root + path.removeprefix(ROOT) if root != ROOT else path

        present = {move(p) for p in self.present} | set(_prefixes(root))
        return Facts(
            frozenset(present),
            frozenset((move(p), t) for p, t in self.types),
            frozenset((move(p), t) for p, t in self.if_present),
            frozenset((move(t), move(s)) for t, s in self.texts),
        )

    def without(self, root: str) -> Facts:
        if root == ROOT:
            return Facts()

        def keep(path: str) -> bool:
            return _under(path, root) is None

        return Facts(
            frozenset(p for p in self.present if keep(p)),
            frozenset((p, t) for p, t in self.types if keep(p)),
            frozenset((p, t) for p, t in self.if_present if keep(p)),
            frozenset((t, s) for t, s in self.texts if keep(t) and keep(s)),
        )

    def union(self, other: Facts) -> Facts:
        return Facts(
            self.present | other.present,
            self.types | other.types,
            self.if_present | other.if_present,
            self.texts | other.texts,
        )

    def with_result(self, result_path: str | None, result: Facts) -> Facts:
        """State output: `result` written at ResultPath into this input."""
        if result_path is None:
            return self
        return self.without(result_path).union(result.placed_at(result_path))

    def learn(self, path: str, kind: str | None = None) -> Facts:
        """`path` is present (with type `kind`); an optional object that turns out present is an object."""
        types = set(self.types)
        if kind:
            types.add((path, kind))
        types |= {(p, t) for p, t in self.if_present if p == path}
        return Facts(frozenset(self.present | set(_prefixes(path))), frozenset(types), self.if_present, self.texts)

    def absent(self, path: str) -> Facts:
        """`path` is missing: "an object if present" holds for it (until a state writes it)."""
        return Facts(self.present, self.types, self.if_present | {(path, "object")}, self.texts)


def _literal(value: Any) -> Facts:
    facts = Facts(types=frozenset({(ROOT, _kind(value))}) if _kind(value) else frozenset())
    if isinstance(value, dict):
        for key, item in value.items():
            facts = facts.union(_literal(item).placed_at(f"$.{key}"))
    return facts


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (int, float)):
        return "number"
    return None


# --- intrinsic functions ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:\\.|[^'\\])*')|(?P<fn>States\.\w+)\(|(?P<path>\$[^,)\s]*)|(?P<num>-?\d+(?:\.\d+)?)|(?P<word>true|false|null)|(?P<punct>[,)]))"
)


def parse_intrinsic(text: str) -> tuple:
    """'States.F(a, $.b, States.G())' -> ("call", "States.F", [("lit", "a"), ("path", "$.b"), ("call", ...)])."""
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise ValueError(f"cannot parse intrinsic {text!r} at {position}")
        position = match.end()
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))

    def expression(i: int) -> tuple[tuple, int]:
        kind, value = tokens[i]
        if kind == "fn":
            args = []
            i += 1
            while tokens[i] != ("punct", ")"):
                arg, i = expression(i)
                args.append(arg)
                if tokens[i] == ("punct", ","):
                    i += 1
            return ("call", value, args), i + 1
        if kind == "path":
            return ("path", value), i + 1
        if kind == "str":
            return ("lit", "string"), i + 1
        if kind == "num":
            return ("lit", "number"), i + 1
        return ("lit", {"true": "boolean", "false": "boolean", "null": "null"}[value]), i + 1

    tree, end = expression(0)
    if end != len(tokens):
        raise ValueError(f"trailing text in intrinsic {text!r}")
    return tree


_RETURNS = {
    "States.Format": "string",
    "States.JsonToString": "string",
    "States.StringSplit": "array",
    "States.ArrayLength": "number",
    "States.MathAdd": "number",
    "States.UUID": "string",
    "States.Array": "array",
    "States.JsonMerge": "object",
    "States.Hash": "string",
    "States.Base64Encode": "string",
}
# argument index -> the type the function needs there (AWS intrinsic function reference)
_NEEDS = {
    "States.JsonMerge": {0: "object", 1: "object"},
    "States.StringSplit": {0: "string", 1: "string"},
    "States.ArrayLength": {0: "array"},
    "States.ArrayGetItem": {0: "array", 1: "number"},
    "States.MathAdd": {0: "number", 1: "number"},
    "States.StringToJson": {0: "string"},
}


@dataclass
class Template:
    facts: Facts
    copies: list[tuple[str, str]] = field(default_factory=list)  # (result path, input path) of "k.$": "$.path"
    texts: list[tuple[str, str]] = field(default_factory=list)  # (result path, input path) of JsonToString(path)


@dataclass
class Walk:
    definition: dict[str, Any]
    notify_state: str = "Notify failure"
    problems: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = self.definition["States"]
        self._models: dict[str, Any] = {}

    # --- values -------------------------------------------------------------------------------------------

    def _value(self, state: str, where: str, tree: tuple, facts: Facts, *, parse_allowed: bool) -> tuple[str | None, Facts]:
        """Type of an intrinsic argument / path, and facts about it (rooted at "$"); reports problems."""
        kind = tree[0]
        if kind == "lit":
            return tree[1], Facts(types=frozenset({(ROOT, tree[1])}))
        if kind == "path":
            path = tree[1]
            if not facts.has(path):
                self.problems.add(f"{state}: {where} reads {path}, which may be missing (States.Runtime on AWS)")
            if path.startswith("$$"):
                return "string", Facts()
            sub = facts.below(path)
            return facts.type_of(path), sub
        name, args = tree[1], tree[2]
        if name == "States.StringToJson" and not parse_allowed:
            self.problems.add(f"{state}: {where} calls States.StringToJson outside a Task's ResultSelector (its failure cannot be caught)")
        values = [self._value(state, where, arg, facts, parse_allowed=parse_allowed) for arg in args]
        for index, needed in _NEEDS.get(name, {}).items():
            if index < len(values) and values[index][0] != needed:
                self.problems.add(
                    f"{state}: {where} calls {name} with argument {index + 1} not known to be {needed} (got {values[index][0]})"
                )
        result = Facts(types=frozenset({(ROOT, _RETURNS[name])})) if name in _RETURNS else Facts()
        if name == "States.JsonMerge" and len(values) >= 2:
            first, second = values[0][1], values[1][1]
            result = Facts(
                first.present | second.present,
                frozenset({(ROOT, "object")}) | frozenset((p, t) for p, t in second.types if p != ROOT),
                frozenset((p, t) for p, t in second.if_present if p not in first.present),
                frozenset(),
            )
        return _RETURNS.get(name), result

    def _template(self, state: str, where: str, template: Any, facts: Facts, *, parse_allowed: bool = False) -> Template:
        """What a Parameters / ResultSelector template produces (facts rooted at "$"), reporting problems."""
        out = Template(_literal(template) if not isinstance(template, dict) else Facts(types=frozenset({(ROOT, "object")})))
        if not isinstance(template, dict):
            return out
        for key, value in template.items():
            if key.endswith(".$"):
                name = key[:-2]
                tree = ("path", value) if value.startswith("$") else parse_intrinsic(value)
                _, sub = self._value(state, f"{where} {name}", tree, facts, parse_allowed=parse_allowed)
                out.facts = out.facts.union(sub.placed_at(f"$.{name}"))
                if tree[0] == "path":
                    out.copies.append((f"$.{name}", tree[1]))
                elif tree[1] == "States.JsonToString" and tree[2][0][0] == "path":
                    out.texts.append((f"$.{name}", tree[2][0][1]))
            else:
                inner = self._template(state, where, value, facts, parse_allowed=parse_allowed)
                out.facts = out.facts.union(inner.facts.placed_at(f"$.{key}"))
                out.copies += [(f"$.{key}" + rel.removeprefix(ROOT), src) for rel, src in inner.copies]
                out.texts += [(f"$.{key}" + rel.removeprefix(ROOT), src) for rel, src in inner.texts]
        return out

    @staticmethod
    def _output(state_input: Facts, result_path: str | None, made: Template) -> Facts:
        """The state output; a text whose source was moved by the template follows it, or is dropped if overwritten."""
        output = state_input.with_result(result_path, made.facts)
        if result_path is None:
            return output
        texts = set()
        for rel, source in made.texts:
            text = result_path + rel.removeprefix(ROOT) if result_path != ROOT else rel
            if result_path != ROOT and _under(source, result_path) is None:
                texts.add((text, source))
                continue
            for copy_rel, copied in made.copies:
                rest = _under(source, copied)
                if rest is not None:
                    target = result_path + copy_rel.removeprefix(ROOT) if result_path != ROOT else copy_rel
                    texts.add((text, target + rest))
        return Facts(output.present, output.types, output.if_present, output.texts | frozenset(texts))

    # --- Task results from the service API model ---------------------------------------------------------

    def _operation(self, resource: str) -> tuple[str, str] | None:
        service_part = resource.split(":::", 1)[1]
        if service_part.startswith("aws-sdk:"):
            _, service, action = service_part.split(":")
        else:
            service, action = service_part.split(":")
        sync = action.endswith(".sync")
        action = action.removesuffix(".sync")
        operation = action[0].upper() + action[1:]
        if sync and operation.startswith("Create"):
            operation = "Describe" + operation.removeprefix("Create")  # .sync answers with the final Describe*
        return _BOTO_SERVICE.get(service, service), operation

    def _api_result(self, resource: str) -> Facts:
        service, operation = self._operation(resource)
        if service not in self._models:
            self._models[service] = botocore.session.get_session().get_service_model(service)
        shape = self._models[service].operation_model(operation).output_shape
        return self._shape_facts(shape, ROOT, depth=0) if shape is not None else Facts()

    def _shape_facts(self, shape: Any, path: str, depth: int, required_here: bool = True) -> Facts:
        """Required members are present; every member's type holds whenever it is there (learnt by IsPresent)."""
        kind = (path, _SHAPE_TYPES.get(shape.type_name, "any"))
        if required_here:
            facts = Facts(present=frozenset(_prefixes(path)), types=frozenset({kind}))
        else:
            facts = Facts(present=frozenset(), if_present=frozenset({kind}))
        if shape.type_name != "structure" or depth > 6:
            return facts
        required = set(shape.required_members)
        payload = shape.serialization.get("payload")
        for name, member in shape.members.items():
            member_path = f"{path}.{name}" if path != ROOT else f"$.{name}"
            # the HTTP payload member (S3 Body) is always there
            facts = facts.union(self._shape_facts(member, member_path, depth + 1, required_here and (name in required or name == payload)))
        return facts

    # --- Choice rules -------------------------------------------------------------------------------------

    _COMPARISONS = re.compile(
        r"^(String|Numeric|Boolean|Timestamp)(Equals|LessThan|GreaterThan|LessThanEquals|GreaterThanEquals|Matches)(Path)?$"
    )

    def _check_rule(self, state: str, rule: dict[str, Any], facts: Facts, guarded: frozenset[str]) -> frozenset[str]:
        """Report rule paths that may be missing; returns the paths an IsPresent in this rule guarded."""
        if "And" in rule:
            for operand in rule["And"]:
                guarded = self._check_rule(state, operand, facts, guarded)
            return guarded
        if "Or" in rule:
            for operand in rule["Or"]:
                self._check_rule(state, operand, facts, guarded)
            return guarded
        if "Not" in rule:
            self._check_rule(state, rule["Not"], facts, guarded)
            return guarded
        variable = rule["Variable"]
        if rule.get("IsPresent") is True:
            return guarded | {variable}
        if "IsPresent" in rule:
            return guarded
        paths = [variable] + [v for k, v in rule.items() if k.endswith("Path") and self._COMPARISONS.match(k)]
        for path in paths:
            if not facts.has(path) and path not in guarded:
                self.problems.add(
                    f"{state}: Choice rule reads {path}, which may be missing and is not guarded by IsPresent (States.Runtime on AWS)"
                )
        return guarded

    def _learn(self, rule: dict[str, Any], truth: bool, facts: Facts) -> Facts:
        if "Not" in rule:
            return self._learn(rule["Not"], not truth, facts)
        if "And" in rule:
            if truth:
                for operand in rule["And"]:
                    facts = self._learn(operand, True, facts)
                return facts
            operands = rule["And"]
            if len(operands) == 2 and operands[0].get("IsPresent") is True:
                # "present and bad" is false: when present, not bad.
                optional = operands[0]["Variable"]
                learnt = self._learn(operands[1], False, facts.learn(optional))
                if (optional, "object") in learnt.types:
                    return Facts(facts.present, facts.types, facts.if_present | {(optional, "object")}, facts.texts)
            return facts
        if "Or" in rule:
            if not truth:
                for operand in rule["Or"]:
                    facts = self._learn(operand, False, facts)
            return facts
        variable = rule["Variable"]
        if rule.get("IsPresent") is not None:
            return facts.learn(variable) if rule["IsPresent"] == truth else facts.absent(variable)
        if not truth:
            return facts
        for key, kind in (("IsNumeric", "number"), ("IsString", "string"), ("IsBoolean", "boolean")):
            if rule.get(key) is True:
                return facts.learn(variable, kind)
        if rule.get("StringMatches") == "{*":
            facts = facts.learn(variable, "string")
            for text, source in facts.texts:
                if text == variable:
                    facts = facts.learn(source, "object")
            return facts
        if rule.get("IsNull") is not None or rule.get("IsTimestamp") is not None:
            return facts.learn(variable)
        return facts.learn(variable)

    # --- the walk -----------------------------------------------------------------------------------------

    def run(self) -> list[str]:
        start = (self.definition["StartAt"], Facts(), False, False)
        seen: set[tuple] = set()
        todo = [start]
        while todo:
            item = todo.pop()
            if item in seen:
                continue
            seen.add(item)
            todo += self._step(*item)
        walked = {item[0] for item in seen}
        for name in sorted(set(self.states) - walked):
            self.problems.add(f"{name}: never reached by the walk (unreachable, or after a state the walk cannot follow)")
        for name, state in self.states.items():
            if state["Type"] == "Task" and name != self.notify_state:
                self._check_catch(name, state)
        return sorted(self.problems)

    def _check_catch(self, name: str, state: dict[str, Any]) -> None:
        catchers = [c for c in state.get("Catch", []) if "States.ALL" in c["ErrorEquals"]]
        if not catchers:
            self.problems.add(f"{name}: Task without a States.ALL Catch: its failure ends the run without a notification")
            return
        for catcher in catchers:
            if not self._always_notifies(catcher["Next"], set()):
                self.problems.add(
                    f"{name}: its States.ALL Catch goes to {catcher['Next']}, which does not always reach {self.notify_state}"
                )

    def _always_notifies(self, name: str, seen: set[str]) -> bool:
        if name == self.notify_state:
            return True
        if name in seen:
            return True  # a loop: judged on its exits
        seen.add(name)
        state = self.states[name]
        nexts = [state["Next"]] if "Next" in state else []
        nexts += [c["Next"] for c in state.get("Choices", [])] + ([state["Default"]] if "Default" in state else [])
        nexts += [c["Next"] for c in state.get("Catch", [])]
        if state["Type"] == "Task" and state["Resource"] == SNS_PUBLISH:
            return True
        return bool(nexts) and all(self._always_notifies(n, seen) for n in nexts)

    def _step(self, name: str, facts: Facts, jobs: bool, notified: bool) -> list[tuple]:
        state = self.states[name]
        kind = state["Type"]
        if kind in ("Parallel", "Map"):
            self.problems.add(f"{name}: {kind} states are not analysed")
            return []
        if kind == "Fail":
            if "CausePath" in state and not facts.has(state["CausePath"]):
                self.problems.add(f"{name}: CausePath {state['CausePath']} may be missing")
            if jobs and not notified:
                self.problems.add(f"{name}: the run can end here after a SageMaker job started, without a notification")
            if not jobs and not notified and state.get("Error") != "InvalidExecutionInput":
                self.problems.add(f"{name}: fails before any job with error {state.get('Error')!r}, not InvalidExecutionInput")
            return []
        if kind == "Succeed":
            if not notified:
                self.problems.add(f"{name}: the run succeeds without a notification")
            return []
        if kind == "Choice":
            if "Default" not in state:
                self.problems.add(f"{name}: Choice without Default (States.NoChoiceMatched cannot be caught)")
            out = []
            earlier = facts
            for rule in state["Choices"]:
                self._check_rule(name, rule, facts, frozenset())
                out.append((rule["Next"], self._learn(rule, True, earlier), jobs, notified))
                earlier = self._learn(rule, False, earlier)
            if "Default" in state:
                out.append((state["Default"], earlier, jobs, notified))
            return out
        if kind == "Wait":
            return [(state["Next"], facts, jobs, notified)]
        if kind == "Pass":
            if "Parameters" in state:
                made = self._template(name, "Parameters", state["Parameters"], facts)
            else:
                made = Template(_literal(state["Result"]) if "Result" in state else facts)
            output = self._output(facts, state.get("ResultPath", ROOT), made)
            return [(state["Next"], output, jobs, notified)] if "Next" in state else []
        if kind == "Task":
            self._template(name, "Parameters", state.get("Parameters", {}), facts)
            api = self._api_result(state["Resource"])
            if "ResultSelector" in state:
                result = self._template(name, "ResultSelector", state["ResultSelector"], api, parse_allowed=True).facts
            else:
                result = api
            now_jobs = jobs or ":::sagemaker:" in state["Resource"]
            now_notified = notified or state["Resource"] == SNS_PUBLISH
            out = []
            if "Next" in state:
                out.append((state["Next"], facts.with_result(state.get("ResultPath", ROOT), result), now_jobs, now_notified))
            for catcher in state.get("Catch", []):
                error = Facts(
                    types=frozenset({("$.Error", "string"), ("$.Cause", "string")}), present=frozenset({ROOT, "$.Error", "$.Cause"})
                )
                out.append((catcher["Next"], facts.with_result(catcher.get("ResultPath", ROOT), error), now_jobs, now_notified))
            return out
        self.problems.add(f"{name}: state type {kind} not analysed")
        return []


def problems(definition: dict[str, Any], notify_state: str = "Notify failure") -> list[str]:
    return Walk(definition, notify_state).run()
