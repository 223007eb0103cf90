"""Fault injection on real processes: a real local Ray (the session's), real Dagster runs, real signals.

Each test breaks something the way it breaks in production (a worker or a run killed, Ctrl-C, a PDF
deleted or replaced while its run works, a rate-limit storm, bad input) and then checks the state left
behind: status rows, index rows, files under the object store's output prefixes, Dagster's event log.
"""
