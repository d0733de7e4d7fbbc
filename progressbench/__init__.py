"""progressbench: measure how long-running jobs report progress to mobile clients.

Installed as one package. Its layers, each importing only those below it
(enforced by the import contract in ``pyproject.toml``):

* ``progressbench.core`` — errors, events, config, job plan, tokens, ledger, the client contract;
* ``progressbench.kit`` — store, executor, embedded database, service runtime;
* ``progressbench.transports``, ``progressbench.chaos``, ``progressbench.reports``;
* ``progressbench.app`` and ``progressbench.loadtests`` — CLI, runner, supervisor, session driver, Locust.

In the repository, transports, chaos, loadtests and reports stay top-level
folders; ``package-dir`` maps them under this package.
"""

__version__ = "0.1.0"
