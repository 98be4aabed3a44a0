"""Data plane: the Rust core's listener and its host (`Gateway`), config sources, the demo agent.

Nothing here imports the control plane (api, store, registry, policy, tenancy, runtime,
security); `agentgate.serve` wires the two together.
"""

from agentgate.gateway.dataplane import Gateway
from agentgate.gateway.sources import ConfigFile, ConfigSource

__all__ = ["ConfigFile", "ConfigSource", "Gateway"]
