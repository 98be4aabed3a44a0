"""What the runtime runs: an agent's process spec after `{{param}}` substitution, its pool key.

Replicas are interchangeable when they run the same thing: same template version, same
rendered command/app, env, network, seccomp and resources. That is the pool key; a warm replica
of a key can be claimed by any agent whose spec has that key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from agentgate.errors import Invalid
from agentgate.registry.template import ProcessSpec, Resources, Scaling, TemplateModel

__all__ = ["AgentSpec", "is_process", "process_spec"]


def is_process(template_body: Mapping[str, Any]) -> bool:
    """Whether a template document is of kind `process`."""
    spec = template_body.get("spec")
    return isinstance(spec, Mapping) and spec.get("kind") == "process"


def process_spec(template_body: Mapping[str, Any], params: Mapping[str, Any]) -> ProcessSpec:
    """The template's process spec with params substituted; `Invalid` names the bad field."""
    from agentgate.runtime.factory import _pydantic_invalid, render_spec

    raw = template_body.get("spec")
    rendered = render_spec(raw, params, "$.template.spec")
    try:
        return ProcessSpec.model_validate(rendered)
    except ValidationError as e:
        raise _pydantic_invalid(e, "$.template.spec") from None


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent as the runtime sees it."""

    agent_id: str
    tenant_id: str
    tenant: str
    name: str
    digest: str
    spec: ProcessSpec
    resources: Resources
    scaling: Scaling
    replicas: int = 1

    @classmethod
    def build(
        cls,
        *,
        agent_id: str,
        tenant_id: str,
        tenant: str,
        name: str,
        digest: str,
        body: Mapping[str, Any],
        params: Mapping[str, Any],
        replicas: int,
    ) -> AgentSpec:
        """From a stored template document and the agent's params."""
        if not is_process(body):
            raise Invalid("$.template.spec.kind: not a process template", "$.template.spec.kind")
        model = TemplateModel.model_validate(body)
        return cls(
            agent_id=agent_id,
            tenant_id=tenant_id,
            tenant=tenant,
            name=name,
            digest=digest,
            spec=process_spec(body, params),
            resources=model.resources,
            scaling=model.scaling,
            replicas=replicas,
        )

    @property
    def kind(self) -> str:
        """`app` or `command`."""
        return "app" if self.spec.app is not None else "command"

    @property
    def pool_key(self) -> str:
        """Replicas with equal keys are interchangeable (see the module docstring)."""
        s = self.spec
        doc = {
            "digest": self.digest,
            "command": s.command,
            "app": s.app,
            "python_path": s.python_path,
            "env": s.env,
            "network": s.network,
            "seccomp": s.seccomp.model_dump(),
            "isolation": s.isolation.model_dump(),
            "readiness": s.readiness.model_dump(),
            "resources": self.resources.model_dump(),
        }
        raw = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(raw).hexdigest()[:16]

    @property
    def zygote_key(self) -> str:
        """Fork servers are shared by specs that import the same thing the same way."""
        s = self.spec
        raw = orjson.dumps(
            {"digest": self.digest, "app": s.app, "python_path": s.python_path, "env": s.env},
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(raw).hexdigest()[:16]

    def target(self, desired: int) -> int:
        """`desired` clamped to the template's min/max replicas."""
        return max(self.scaling.min_replicas, min(self.scaling.max_replicas, desired))
