"""Laptop tooling: the simulation, the ServiceNow stand-in and the command line."""
