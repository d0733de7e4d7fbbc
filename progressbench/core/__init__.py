"""The floor every other layer stands on: errors, events, configuration, the job plan, tokens, the ledger
and the transports' client contract. Pure values and logic; imports nothing of progressbench above it."""
