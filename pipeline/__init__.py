"""seqarena: sequence architectures trained, measured and compared the same way (README.md)."""
