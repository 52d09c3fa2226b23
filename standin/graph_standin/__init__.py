"""A stand-in for Meta's Graph API (the WhatsApp Cloud API management calls), for tests and
`make run`: a real HTTP server on loopback with Meta's shapes, error bodies and the live
challenge call during webhook registration. Never a substitute for reading Meta's docs: its
shapes are pinned by tests written from Meta's documented examples."""

from .app import GraphStandin
from .state import Fault, FaultKind, NumberSeed

__all__ = ["Fault", "FaultKind", "GraphStandin", "NumberSeed"]
