"""Event-sourced state: agent lifecycle and replica checkpoints on the store's event log.

- `AgentHistory`: record lifecycle events, the state of one or all agents as of a time,
  retention per event class; `restore_agents` writes a past state back as new events.
- `ReplicaCheckpoints`: the runtime's checkpoint API (append / latest).
- `AgentStateView` / `Tailer`: projections rebuilt from the log, tailing by position behind a
  high-water mark.
"""

from agentgate.state.agents import (
    DEFAULT_RETENTION,
    AgentHistory,
    AgentState,
    agent_document,
    fold,
)
from agentgate.state.checkpoints import ReplicaCheckpoints
from agentgate.state.projection import AgentStateView, Tailer
from agentgate.state.restore import restore_agents

__all__ = [
    "DEFAULT_RETENTION",
    "AgentHistory",
    "AgentState",
    "AgentStateView",
    "ReplicaCheckpoints",
    "Tailer",
    "agent_document",
    "fold",
    "restore_agents",
]
