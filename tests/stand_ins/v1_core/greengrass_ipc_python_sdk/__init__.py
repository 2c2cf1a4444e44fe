"""Stand-in for the V1 core's ``greengrass_ipc_python_sdk`` package (see ../README.md)."""
