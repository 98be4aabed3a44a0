"""agentgate: an async gateway and control plane for fleets of AI agents."""

from agentgate._core import __version__

__all__ = ["__version__"]
