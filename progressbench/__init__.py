"""progressbench: measure how long-running jobs report progress to mobile clients.

The harness package. Transports live in ``transports/``, faults in ``chaos/``,
load generation in ``loadtests/`` and result rendering in ``reports/``.
"""

__version__ = "0.1.0"
