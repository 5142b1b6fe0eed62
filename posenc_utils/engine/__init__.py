"""Engine: image sets, cached features, the measures of position, the readout and its fast path, tables and plots."""
