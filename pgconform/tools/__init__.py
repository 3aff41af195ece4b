"""Tools over the suite: bench, matrix, windows, soak, userrun."""
