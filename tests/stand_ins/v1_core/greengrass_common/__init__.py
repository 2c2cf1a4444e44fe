"""Stand-in for the V1 core's ``greengrass_common`` package (see ../README.md)."""
