"""Weight normalizations of critics: SAN (FFT ‖W‖₀,∞) and spectral norm."""
