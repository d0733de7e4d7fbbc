"""The application on top: CLI, run orchestration, supervisor, session driver and the service entry points
that mount the transports. The only layer that may import transports, chaos, reports and loadtests."""
