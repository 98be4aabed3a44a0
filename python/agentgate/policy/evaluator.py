"""Policy decisions on template publish, agent creation and deploy, evaluated by the Rust core.

The shipped defaults (`defaults/*.rego`) always apply; a tenant adds its own modules, each in a
package under `agentgate.rules.<name>` whose `deny` set contributes reasons named `<name>`. A
bundle (defaults + one tenant's active modules) is compiled once and cached; evaluation is a
few tens of microseconds and releases the GIL, so it is called inline from async code.

Input document (what the rules read; every key optional, missing quotas mean unlimited):
`stage`, `template` {name, version, digest, capabilities, resources {cpu, memory_mb}},
`signature` {verified, key_id}, `tenant` {id, name, trusted_keys, allowed_capabilities,
allow_unsigned}, `caller` {id, roles}, `quotas` and `usage` {agents, replicas, cpu, memory_mb},
`request` {replicas, previous_replicas}.

Who fills it in: the publish handler (`api/routes/templates.py`) gives template, signature,
tenant {id, name} and caller; the agent factory adds quotas (the tenant's), usage and request
for `create` / `deploy`. Nothing stores a tenant's `trusted_keys`, `allowed_capabilities` or
`allow_unsigned` yet, so the shipped rules that read them only act on inputs that carry them
(dry runs, tenant policies with their own data).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, Protocol

import orjson

from agentgate._core import PolicyCompileError, PolicyEngine, PolicyError
from agentgate.errors import Invalid

__all__ = [
    "CompileProblem",
    "DryRun",
    "ModuleCoverage",
    "PolicyCompileFailed",
    "PolicyDecision",
    "PolicyService",
    "Reason",
    "Stage",
    "default_modules",
]

Stage = Literal["publish", "create", "deploy"]
STAGES: tuple[Stage, ...] = ("publish", "create", "deploy")

_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_TENANT_PACKAGE = re.compile(r"^agentgate\.rules\.[A-Za-z_]\w*$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Reason:
    """One deny reason and the rule (policy package) that produced it."""

    rule: str
    message: str


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """Allow or deny, with every reason; `rules` lists the distinct rules that denied."""

    stage: str
    allow: bool
    reasons: tuple[Reason, ...]

    @property
    def rules(self) -> tuple[str, ...]:
        """Distinct rule names behind the reasons, in first-seen order."""
        return tuple(dict.fromkeys(r.rule for r in self.reasons))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what goes into the audit trail and problem+json bodies)."""
        return {
            "stage": self.stage,
            "allow": self.allow,
            "rules": list(self.rules),
            "reasons": [{"rule": r.rule, "message": r.message} for r in self.reasons],
        }


@dataclass(frozen=True, slots=True)
class ModuleCoverage:
    """Lines of one module that the evaluation ran (and did not run)."""

    module: str
    covered: tuple[int, ...]
    not_covered: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DryRun:
    """A decision plus the explanation a dry run shows: raw result and per-module coverage."""

    decision: PolicyDecision
    result: Any
    modules: tuple[str, ...]
    coverage: tuple[ModuleCoverage, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the dry-run endpoint."""
        return {
            **self.decision.as_dict(),
            "result": self.result,
            "modules": list(self.modules),
            "coverage": [
                {"module": c.module, "covered": list(c.covered), "not_covered": list(c.not_covered)}
                for c in self.coverage
            ],
        }


@dataclass(frozen=True, slots=True)
class CompileProblem:
    """Where and why a module does not compile (1-based line/col; 0 when unknown)."""

    module: str
    line: int
    col: int
    message: str


class PolicyCompileFailed(Invalid):
    """A policy module was rejected on save; `problem` names the module, line and column."""

    def __init__(self, problem: CompileProblem) -> None:
        where = f"{problem.module}:{problem.line}:{problem.col}"
        super().__init__(f"policy does not compile at {where}: {problem.message}", path="$.rego")
        self.compile_problem = problem

    def problem(self) -> dict[str, Any]:
        """Problem members plus the module/line/col of the error."""
        p = self.compile_problem
        return {
            **super().problem(),
            "module": p.module,
            "line": p.line,
            "col": p.col,
        }


class PolicySource(Protocol):
    """What `load_tenant` needs from the store's `PolicyRepo`: the active versions."""

    async def list(self, *, active_only: bool = False) -> list[Any]: ...


def default_modules() -> dict[str, str]:
    """The shipped default Rego modules, by file name."""
    root = resources.files("agentgate.policy") / "defaults"
    return {
        f.name: f.read_text(encoding="utf-8")
        for f in sorted(root.iterdir(), key=lambda f: f.name)
        if f.name.endswith(".rego")
    }


def _problem(err: PolicyCompileError) -> CompileProblem:
    return CompileProblem(err.module, err.line, err.col, err.message)


def _tenant_module_name(name: str) -> str:
    return f"tenant/{name}.rego"


class PolicyService:
    """Compiles, caches and evaluates policy bundles: shipped defaults plus tenant modules."""

    def __init__(self, *, data: Mapping[str, Any] | None = None) -> None:
        self._defaults = default_modules()
        self._data = None if data is None else orjson.dumps(data).decode()
        self._tenant_modules: dict[str, dict[str, str]] = {}
        self._engines: dict[str | None, PolicyEngine] = {}
        self._engines[None] = self._compile({})

    def _compile(self, tenant_modules: Mapping[str, str]) -> PolicyEngine:
        modules = dict(self._defaults)
        modules.update({_tenant_module_name(n): src for n, src in tenant_modules.items()})
        try:
            return PolicyEngine(modules, self._data)
        except PolicyCompileError as e:
            raise PolicyCompileFailed(_problem(e)) from None

    def validate(self, name: str, rego: str, *, tenant_id: str | None = None) -> None:
        """Check a tenant module before saving; raises `PolicyCompileFailed` / `Invalid`."""
        if not _NAME.match(name):
            raise Invalid(f"policy name {name!r} must be 1-64 of [A-Za-z0-9_.-]", path="$.name")
        m = _PACKAGE.search(rego)
        if m is None or not _TENANT_PACKAGE.match(m.group(1)):
            found = m.group(1) if m else "none"
            raise Invalid(
                f"policy must declare `package agentgate.rules.<name>` (found {found})",
                path="$.rego",
            )
        others = dict(self._tenant_modules.get(tenant_id or "", {}))
        others[name] = rego
        self._compile(others)

    def set_tenant_policies(self, tenant_id: str, modules: Mapping[str, str]) -> None:
        """Replace a tenant's custom modules (name -> Rego) and recompile its bundle."""
        for name in modules:
            if not _NAME.match(name):
                raise Invalid(f"policy name {name!r} is not valid", path="$.name")
        engine = self._compile(modules)
        self._tenant_modules[tenant_id] = dict(modules)
        self._engines[tenant_id] = engine

    def tenant_policies(self, tenant_id: str) -> dict[str, str]:
        """The custom modules in force for a tenant (name -> Rego)."""
        return dict(self._tenant_modules.get(tenant_id, {}))

    async def load_tenant(self, tenant_id: str, repo: PolicySource) -> None:
        """Load a tenant's active policies from the store (`PolicyRepo`) and recompile."""
        policies = await repo.list(active_only=True)
        self.set_tenant_policies(tenant_id, {p.name: p.rego for p in policies})

    async def ensure_tenant(self, tenant_id: str, repo: PolicySource) -> None:
        """Load a tenant's policies from the store unless this service already holds them.

        Writes through the API reload explicitly; this covers a fresh process (restart), where a
        decision must not silently fall back to the defaults alone."""
        if tenant_id not in self._engines:
            await self.load_tenant(tenant_id, repo)

    def engine(self, tenant_id: str | None = None) -> PolicyEngine:
        """The compiled bundle for a tenant (defaults only when it has no custom modules)."""
        if tenant_id is not None:
            engine = self._engines.get(tenant_id)
            if engine is not None:
                return engine
        return self._engines[None]

    @staticmethod
    def _input(stage: str, input: Mapping[str, Any]) -> bytes:
        if stage not in STAGES:
            raise Invalid(f"stage must be one of {', '.join(STAGES)}, got {stage!r}", "$.stage")
        return orjson.dumps({**input, "stage": stage})

    def evaluate(
        self, stage: Stage, input: Mapping[str, Any], *, tenant_id: str | None = None
    ) -> PolicyDecision:
        """Decide `stage` for `input` with the tenant's bundle (µs: fine inline in async code)."""
        tid = tenant_id if tenant_id is not None else _tenant_of(input)
        try:
            d = self.engine(tid).evaluate(self._input(stage, input))
        except PolicyError as e:
            raise Invalid(str(e), path="$") from None
        return PolicyDecision(stage, d.allow, tuple(Reason(r.rule, r.message) for r in d.reasons))

    def dry_run(
        self, stage: Stage, input: Mapping[str, Any], *, tenant_id: str | None = None
    ) -> DryRun:
        """Evaluate and explain: decision, raw result and which lines of which modules ran."""
        tid = tenant_id if tenant_id is not None else _tenant_of(input)
        engine = self.engine(tid)
        try:
            x = engine.explain(self._input(stage, input))
        except PolicyError as e:
            raise Invalid(str(e), path="$") from None
        reasons = tuple(Reason(r.rule, r.message) for r in x.decision.reasons)
        return DryRun(
            decision=PolicyDecision(stage, x.decision.allow, reasons),
            result=orjson.loads(x.result_json),
            modules=tuple(engine.modules),
            coverage=tuple(
                ModuleCoverage(c.module, tuple(c.covered), tuple(c.not_covered)) for c in x.coverage
            ),
        )


def _tenant_of(input: Mapping[str, Any]) -> str | None:
    tenant = input.get("tenant")
    if isinstance(tenant, Mapping):
        tid = tenant.get("id")
        if isinstance(tid, str):
            return tid
    return None
