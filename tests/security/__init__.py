"""Security probes of issue #13: one test per probe, each failing before its fix."""
