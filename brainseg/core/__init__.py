"""The shared base: reading data, the split, preprocessing, networks, losses and metrics."""
