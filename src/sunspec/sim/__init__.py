"""A synthetic OVRO-LWA power-beam recorder with a labelled Sun.

- :mod:`~sunspec.sim.config`: :class:`SimConfig`, every parameter, and the activity levels
  with the sources of their rates;
- :mod:`~sunspec.sim.events`: the bursts and interference (models and their sources);
- :mod:`~sunspec.sim.scenario`: random events in time order, one random stream per kind;
- :mod:`~sunspec.sim.model`: :class:`Simulator`, gulps (the recorder-faithful path) or
  frames (the frame-level path), and :meth:`Simulator.truth`;
- :mod:`~sunspec.sim.stream`: :class:`SimulatedStream`, through the recorder's Averager and
  Publisher.
"""

from .config import ACTIVITY, SimConfig
from .events import Event, Impulse, RFILine, Spike, TypeII, TypeIII, TypeIV
from .model import DEFAULT_CHAN0, POLS, SKY_LEVEL, Simulator, write_truth
from .scenario import DEFAULT_RFI, EventSource, power_law, rfi_lines
from .stream import SimulatedStream

__all__ = ["ACTIVITY", "DEFAULT_CHAN0", "DEFAULT_RFI", "POLS", "SKY_LEVEL", "Event",
           "EventSource", "Impulse", "RFILine", "SimConfig", "SimulatedStream", "Simulator",
           "Spike", "TypeII", "TypeIII", "TypeIV", "power_law", "rfi_lines", "write_truth"]
