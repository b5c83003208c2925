"""The networks: layers, contextual attention, the generator and the critics."""
