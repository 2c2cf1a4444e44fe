"""Edge agent: the library both Greengrass functions share.

Device code. It must stay importable on Python 3.8 and import fast: heavy or
optional modules (sense_hat, greengrasssdk, awsiot, requests) are imported
only where they are used.
"""

__version__ = "0.1.0"
