"""The service processes the supervisor starts: API and worker instances, and the job runner."""
