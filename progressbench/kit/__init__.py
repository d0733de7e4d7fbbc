"""What transports and services build on: the progress store, the executor, the embedded database and the
service runtime (sockets, readiness, context, meters). Imports only the core."""
