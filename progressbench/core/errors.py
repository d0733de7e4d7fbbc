"""The testbed's own exceptions, mapped once at the boundary.

Hierarchy::

    ProgressbenchError              anything the testbed raises on purpose
    ├── ConfigError                 bad arguments, files or environment (exit 2)
    ├── StoreError                  the progress store cannot be reached or migrated
    │   └── StoreUnavailable        connection refused / bad URL / auth failure
    ├── StackError                  a service failed to start, got unhealthy, or died
    ├── ChaosError                  the fault proxy refused or failed a control call
    │   └── UnsupportedToxic        a toxic the target proxy server does not implement
    ├── TransportError              a transport client hit a condition it cannot recover
    └── ResultsError                a results folder is missing, corrupt or of an unknown
                                    schema version

A lost or duplicated event is never an exception: it is a finding, recorded
as data by the ledger. The CLI turns a ``ProgressbenchError`` into one line
on stderr and an exit code; anything else is a bug and keeps its traceback
in the run's log.
"""

from __future__ import annotations


class ProgressbenchError(Exception):
    """Base of every error the testbed raises deliberately."""

    exit_code = 1


class ConfigError(ProgressbenchError):
    """The user gave something we cannot use; the message names the key."""

    exit_code = 2


class StoreError(ProgressbenchError):
    """The progress store failed (migration, query) in a way we cannot retry."""


class StoreUnavailable(StoreError):
    """The progress store cannot be reached with the given URL."""


class StackError(ProgressbenchError):
    """A supervised service failed to start, become healthy, or stay alive."""


class ChaosError(ProgressbenchError):
    """The fault-injection proxy refused or failed a control call."""


class UnsupportedToxic(ChaosError):
    """The proxy server behind the adapter does not implement this toxic."""


class TransportError(ProgressbenchError):
    """A transport client met a condition it cannot recover from."""


class ResultsError(ProgressbenchError):
    """A results folder is missing, unreadable, or of an unknown schema version."""
