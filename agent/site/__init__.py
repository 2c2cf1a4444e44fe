"""A site of many Pis: the gateway's grouping of episodes and its watch for silent devices."""
